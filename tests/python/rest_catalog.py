"""An Iceberg REST catalog server for tests, backed by PyIceberg's SQL catalog.

Usage: rest_catalog.py [HOST:]PORT CATALOG_DB WAREHOUSE_URL [KEY=VALUE ...]

Serves the part of the Iceberg REST catalog protocol a writer and a reader use (config,
namespaces, tables: create, load, exists, commit, drop) on HOST:PORT (HOST: 127.0.0.1 unless
given; PORT 0: any free port), and prints "listening PORT" once it accepts connections.
KEY=VALUE are properties of the catalog's own file IO, e.g. s3.endpoint=http://127.0.0.1:9000
for a warehouse in an S3 bucket. Table metadata lives in the
SQLite file CATALOG_DB; metadata files are written by PyIceberg, as a REST catalog service
writes them.
"""

import functools
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pyarrow.fs
from pyiceberg.catalog.rest import CreateTableRequest, TableResponse
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import CommitTableRequest, Table
from pyiceberg.table.update import AddSchemaUpdate, TableUpdate

NAMESPACE = re.compile(r"^/v1/namespaces/([^/]+)$")
TABLES = re.compile(r"^/v1/namespaces/([^/]+)/tables$")
TABLE = re.compile(r"^/v1/namespaces/([^/]+)/tables/([^/]+)$")

# Exceptions the protocol answers with a status of their own; anything else is a 500.
STATUS = {
    NoSuchTableError: 404,
    NoSuchNamespaceError: 404,
    TableAlreadyExistsError: 409,
    NamespaceAlreadyExistsError: 409,
    CommitFailedException: 409,
}


def namespace_of(segment: str) -> tuple[str, ...]:
    # Multi-level namespaces are joined by the unit separator in REST paths.
    return tuple(unquote(segment).split("\x1f"))


class Handler(BaseHTTPRequestHandler):
    catalog: SqlCatalog
    lock = threading.Lock()

    def do_GET(self) -> None:
        self.serve("GET")

    def do_HEAD(self) -> None:
        self.serve("HEAD")

    def do_POST(self) -> None:
        self.serve("POST")

    def do_DELETE(self) -> None:
        self.serve("DELETE")

    def serve(self, method: str) -> None:
        path = urlparse(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            with self.lock:
                status, reply = self.route(method, path, body)
        except Exception as e:  # noqa: BLE001 - every failure is answered, as a server must
            status = next((STATUS[t] for t in type(e).__mro__ if t in STATUS), 500)
            reply = {"error": {"message": str(e), "type": type(e).__name__, "code": status}}
        self.answer(status, reply)

    def route(self, method: str, path: str, body: bytes) -> tuple[int, object]:
        c = self.catalog
        if method == "GET" and path == "/v1/config":
            return 200, {"defaults": {}, "overrides": {}}
        if method == "POST" and path == "/v1/namespaces":
            request = json.loads(body)
            namespace = tuple(request["namespace"])
            c.create_namespace(namespace, request.get("properties") or {})
            return 200, {"namespace": list(namespace), "properties": request.get("properties") or {}}
        if m := NAMESPACE.match(path):
            namespace = namespace_of(m.group(1))
            if method == "HEAD":
                return (204 if c.namespace_exists(namespace) else 404), None
            if method == "GET":
                properties = c.load_namespace_properties(namespace)
                return 200, {"namespace": list(namespace), "properties": properties}
        if (m := TABLES.match(path)) and method == "POST":
            fields = json.loads(body)
            # Optional in the protocol; PyIceberg's model wants them present.
            fields.setdefault("partition-spec", None)
            fields.setdefault("write-order", None)
            request = CreateTableRequest.model_validate(fields)
            kwargs = {"location": request.location, "properties": request.properties}
            if request.partition_spec is not None:
                kwargs["partition_spec"] = request.partition_spec
            if request.write_order is not None:
                kwargs["sort_order"] = request.write_order
            identifier = (*namespace_of(m.group(1)), request.name)
            return 200, loaded(c.create_table(identifier, request.table_schema, **kwargs))
        if m := TABLE.match(path):
            identifier = (*namespace_of(m.group(1)), unquote(m.group(2)))
            if method == "HEAD":
                return (204 if c.table_exists(identifier) else 404), None
            if method == "GET":
                return 200, loaded(c.load_table(identifier))
            if method == "DELETE":
                c.drop_table(identifier)
                return 204, None
            if method == "POST":
                request = CommitTableRequest.model_validate_json(body)
                table = c.load_table(identifier)
                updates = with_fresh_schema_ids(table, request.updates)
                response = c.commit_table(table, request.requirements, updates)
                return 200, json.loads(response.model_dump_json(by_alias=True))
        return 404, {"error": {"message": f"no route {method} {path}", "type": "NotFound", "code": 404}}

    def answer(self, status: int, reply: object) -> None:
        data = b"" if reply is None else json.dumps(reply).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("rest catalog: " + format % args + "\n")


def with_fresh_schema_ids(table: Table, updates: tuple[TableUpdate, ...]) -> tuple[TableUpdate, ...]:
    """A catalog service numbers added schemas itself: a client (iceberg-rust among them)
    may send an added schema with an id the table has already. PyIceberg applies updates
    as sent, so the ids are made fresh here, as a Java REST catalog does."""
    taken = {s.schema_id for s in table.metadata.schemas}
    fresh = []
    for update in updates:
        if isinstance(update, AddSchemaUpdate) and update.schema_.schema_id in taken:
            schema = update.schema_.model_copy(update={"schema_id": max(taken) + 1})
            update = update.model_copy(update={"schema_": schema})
        if isinstance(update, AddSchemaUpdate):
            taken.add(update.schema_.schema_id)
        fresh.append(update)
    return tuple(fresh)


def loaded(table: Table) -> object:
    response = TableResponse(metadata_location=table.metadata_location, metadata=table.metadata)
    return json.loads(response.model_dump_json(by_alias=True))


def small_files_in_one_put() -> None:
    """pyarrow's S3 output streams upload even a small file in parts unless opened lazily,
    and moto (the S3 server the tests run) answers the parts' completion in a form pyarrow
    takes for an error; opened lazily, a metadata file is one PutObject. PyIceberg builds
    its S3 file system when it writes, from pyarrow.fs."""
    pyarrow.fs.S3FileSystem = functools.partial(pyarrow.fs.S3FileSystem, allow_delayed_open=True)


def main() -> None:
    small_files_in_one_put()
    listen, db, warehouse, *props = sys.argv[1:]
    host, _, port = listen.rpartition(":")
    properties = dict(p.split("=", 1) for p in props)
    Handler.catalog = SqlCatalog("rest", uri=f"sqlite:///{db}", warehouse=warehouse, **properties)
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
