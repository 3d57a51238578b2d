"""A secured cluster (`arka dev --tls --auth-file`) from plain pyarrow: TLS with the cluster's
CA, the basic-auth Handshake, the bearer token on every call, each role held to its rights.

    python3 tests/python/secured.py grpc+tls://127.0.0.1:8815,… CA_PEM

Users (name, role, password) come from ARKA_TEST_USERS as JSON. Prints one line per check
and exits non-zero at the first failure.
"""
import json
import os
import sys
import uuid

import pyarrow as pa
import pyarrow.flight as flight

TIMEOUT = 30.0


def check(what, ok):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def refused(call, error):
    try:
        call()
    except error:
        return True
    except Exception as other:  # noqa: BLE001 - any other outcome is reported
        print(f"     got {type(other).__name__}: {other}")
        return False
    return False


def action(client, name, body, options):
    data = json.dumps(body).encode() if body is not None else b""
    results = list(client.do_action(flight.Action(name, data), options))
    return json.loads(results[0].body.to_pybytes()) if results else None


def put(client, table, options):
    schema = pa.schema([("id", pa.int64())])
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(table), schema, options)
    writer.write_batch(pa.record_batch([[1, 2, 3]], schema=schema))
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return json.loads(meta.to_pybytes())["lsn"]


def main():
    addrs, ca_path = sys.argv[1].split(","), sys.argv[2]
    users = json.loads(os.environ["ARKA_TEST_USERS"])
    ca = open(ca_path, "rb").read()
    leader = addrs[0]

    plain = flight.connect(leader.replace("grpc+tls://", "grpc://"))
    check("plaintext is refused on a TLS port",
          refused(lambda: plain.list_actions(flight.FlightCallOptions(timeout=5)), Exception))

    client = flight.connect(leader, tls_root_certs=ca)
    anonymous = flight.FlightCallOptions(timeout=TIMEOUT)
    check("a call without a token is UNAUTHENTICATED",
          refused(lambda: action(client, "status", None, anonymous),
                  flight.FlightUnauthenticatedError))
    check("a wrong password is UNAUTHENTICATED",
          refused(lambda: client.authenticate_basic_token(users["admin"][0], "wrong"),
                  flight.FlightUnauthenticatedError))

    tokens = {}
    for role, (name, password) in users.items():
        c = flight.connect(leader, tls_root_certs=ca)
        header = c.authenticate_basic_token(name, password)
        check(f"{role} signs in and gets a bearer token",
              header[0] == b"authorization" and header[1].startswith(b"Bearer "))
        tokens[role] = (c, flight.FlightCallOptions(headers=[header], timeout=TIMEOUT), header)

    table = "sec_" + uuid.uuid4().hex[:12]
    writer, w_opts, _ = tokens["writer"]
    lsn = put(writer, table, w_opts)
    check("the writer writes", lsn > 0)
    status = action(writer, "status", None, w_opts)
    check("locations handed out are grpc+tls://",
          str(status["leader_location"]).startswith("grpc+tls://"))

    reader, r_opts, r_header = tokens["reader"]
    ticket = flight.Ticket(json.dumps({"table": table, "min_lsn": lsn}).encode())
    rows = reader.do_get(ticket, r_opts).read_all().num_rows
    check("the reader reads", rows == 3)
    check("the reader cannot write",
          refused(lambda: put(reader, table, r_opts), flight.FlightUnauthorizedError))
    check("the reader cannot drop a table",
          refused(lambda: action(reader, "drop_table", {"name": table}, r_opts),
                  flight.FlightUnauthorizedError))
    check("the writer cannot remove a node",
          refused(lambda: action(writer, "remove_node", {"node_id": 3}, w_opts),
                  flight.FlightUnauthorizedError))
    check("the writer cannot set retention",
          refused(lambda: action(writer, "set_retention", {"bytes": 0, "ms": 0}, w_opts),
                  flight.FlightUnauthorizedError))

    admin, a_opts, _ = tokens["admin"]
    action(admin, "set_retention", {"bytes": 1 << 30, "ms": 3_600_000}, a_opts)
    check("the admin sets retention", True)
    action(admin, "drop_table", {"name": table}, a_opts)
    check("the admin drops the table",
          table not in [t["name"] for t in action(admin, "list_tables", None, a_opts)["tables"]])

    # As the ADBC Flight SQL driver does with a token it holds: the header, no Handshake,
    # on a new connection to another node.
    fresh = flight.connect(addrs[1], tls_root_certs=ca)
    bearer = flight.FlightCallOptions(headers=[r_header], timeout=TIMEOUT)
    check("a bearer header works without a Handshake, on any node",
          action(fresh, "status", None, bearer)["node_id"] is not None)


if __name__ == "__main__":
    main()
