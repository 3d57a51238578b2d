"""Reads an arka table back from its Iceberg table with PyIceberg and prints it as JSON.

Usage: iceberg_read.py CATALOG WAREHOUSE_URL TABLE [KEY=VALUE ...]
CATALOG is an SQLite catalog file, or the URI (http://…) of a REST catalog; KEY=VALUE are
catalog properties, e.g. s3.endpoint=http://127.0.0.1:9000.

Prints {"exists": true, "snapshot_lsn": N, "rows": [{column: value, ...}, ...]} with rows in
`_lsn` order, or {"exists": false} when the catalog has no such table; values JSON has no type
for (decimals, timestamps) are printed as Python prints them.
"""

import json
import sys

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError


def open_catalog(catalog: str, warehouse: str, properties: dict[str, str]) -> Catalog:
    if catalog.startswith(("http://", "https://")):
        return RestCatalog("arka", uri=catalog, warehouse=warehouse, **properties)
    return SqlCatalog("arka", uri=f"sqlite:///{catalog}", warehouse=warehouse, **properties)


def main() -> None:
    catalog, warehouse, table, *props = sys.argv[1:]
    properties = dict(p.split("=", 1) for p in props)
    catalog = open_catalog(catalog, warehouse, properties)
    try:
        tbl = catalog.load_table(("arka", table))
    except NoSuchTableError:
        print(json.dumps({"exists": False}))
        return
    snapshot = tbl.current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot else {}
    rows = tbl.scan().to_arrow().sort_by("_lsn").to_pylist()
    print(json.dumps({"exists": True, "snapshot_lsn": int(summary.get("arka.lsn", 0)), "rows": rows}, default=str))


if __name__ == "__main__":
    main()
