"""Interop tests: plain pyarrow.flight against a running arka cluster (DESIGN.md section 4).

    ARKA_ADDRS=grpc://127.0.0.1:8815,grpc://127.0.0.1:8816,grpc://127.0.0.1:8817 \
        python -m pytest tests/python

The first address must be the leader when the tests start; the others are followers.
Every test writes to its own table (uuid name), so the suite can run against a cluster
that already holds data, and more than once.
"""
import contextlib
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import uuid

import pyarrow as pa
import pyarrow.flight as flight
import pytest

# How pyarrow's Flight client turns the gRPC status codes arka uses into exceptions
# (checked against pyarrow 26 with a raw gRPC server returning each code). Several are
# NOT subclasses of flight.FlightError:
#   INVALID_ARGUMENT    -> pyarrow.ArrowInvalid (ValueError)
#   NOT_FOUND           -> pyarrow.ArrowKeyError (KeyError)
#   RESOURCE_EXHAUSTED  -> pyarrow.ArrowInvalid ("gRPC returned resource exhausted error, ...")
#   UNAVAILABLE         -> flight.FlightUnavailableError
#   ABORTED             -> flight.FlightInternalError ("gRPC returned aborted error, ...")
#   UNKNOWN             -> flight.FlightServerError
#   UNAUTHENTICATED     -> flight.FlightUnauthenticatedError
#   PERMISSION_DENIED   -> flight.FlightUnauthorizedError
#   FAILED_PRECONDITION -> pyarrow.ArrowInvalid ("gRPC returned precondition failed error, ...")
# str(exc) contains the server's message. On a streaming call (DoPut, DoExchange, DoGet) the
# error can surface at any write, at done_writing, at a read or at close, depending on
# timing, so the tests always wrap the whole call. (RESOURCE_EXHAUSTED and ABORTED are not
# provoked here; they are named so that the mapping lives in one place.)
INVALID_ARGUMENT = pa.ArrowInvalid
NOT_FOUND = pa.ArrowKeyError
RESOURCE_EXHAUSTED = pa.ArrowInvalid
UNAVAILABLE = flight.FlightUnavailableError
ABORTED = flight.FlightInternalError
FAILED_PRECONDITION = pa.ArrowInvalid

TIMEOUT = 60.0  # seconds; a deadline on every call, so a stuck stream fails instead of hanging
LEVELS = ["MEMORY", "LOCAL_DISK", "REPLICATED", "OBJECT_STORAGE", "COMMITTED"]
STATUS_KEYS = {
    "node_id", "role", "term", "leader_id", "leader_location", "members", "memory_lsn",
    "disk_lsn", "replicated_lsn", "s3_lsn", "committed_lsn", "lag_seconds", "tier_worker",
}
REQUIRED_ACTIONS = {
    "status", "cluster_status", "list_tables", "create_table", "drop_table",
    "get_durability_status", "register_producer", "snapshot", "add_node", "remove_node",
    "transfer_leader",
}
SCHEMA = pa.schema([("id", pa.int64()), ("msg", pa.utf8())])
QUICKSTART = pathlib.Path(__file__).with_name("quickstart.py")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def addrs():
    addrs = [a.strip() for a in os.environ.get("ARKA_ADDRS", "").split(",") if a.strip()]
    if not addrs:
        pytest.fail(
            "ARKA_ADDRS is not set: give the Flight addresses of a running arka cluster, "
            "leader first, e.g. ARKA_ADDRS=grpc://127.0.0.1:8815,grpc://127.0.0.1:8816,"
            "grpc://127.0.0.1:8817", pytrace=False)
    return addrs


@pytest.fixture(scope="session")
def leader(addrs):
    return addrs[0]


@pytest.fixture(scope="session")
def followers(addrs):
    if len(addrs) < 2:
        pytest.fail(f"this test needs at least one follower in ARKA_ADDRS, got {addrs}",
                    pytrace=False)
    return addrs[1:]


# ----------------------------------------------------------------------------- helpers


def connect(addr, middleware=None):
    """A Flight client (use it as a context manager, so its channel is closed);
    `middleware` is one optional flight.ClientMiddlewareFactory."""
    return flight.connect(addr, middleware=[middleware] if middleware else None)


def options(ack_until=None, compression=None):
    """Call options; `compression` ("zstd" or "lz4") compresses the batches written."""
    headers = [(b"x-arka-ack-until", ack_until.encode())] if ack_until else []
    write_options = pa.ipc.IpcWriteOptions(compression=compression) if compression else None
    return flight.FlightCallOptions(timeout=TIMEOUT, headers=headers, write_options=write_options)


def unique_table_name(prefix="t"):
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def make_batch(ids, schema=SCHEMA):
    ids = list(ids)
    return pa.record_batch([ids, [f"msg {i}" for i in ids]], schema=schema)


def producer_meta(producer_id, seq):
    return {"producer_id": producer_id, "seq": seq}


@contextlib.contextmanager
def closing_writer(writer):
    """Close a Flight stream writer: normally on success (this surfaces the call's final
    status), quietly after an error (else pyarrow logs the same error again on teardown)."""
    try:
        yield writer
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    writer.close()


def write_exchange(addr, table, batches, metas, ack_until="REPLICATED", middleware=None,
                   compression=None):
    """Stream `batches` to ["streaming_write", table] with DoExchange and return every ack
    row the server sent, as one table. metas[i] is the app_metadata of batches[i]: a dict
    (sent as JSON), raw bytes, or None."""
    descriptor = flight.FlightDescriptor.for_path("streaming_write", table)
    with connect(addr, middleware) as client:
        writer, reader = client.do_exchange(descriptor, options(ack_until, compression))
        with closing_writer(writer):
            writer.begin(batches[0].schema)
            for batch, meta in zip(batches, metas, strict=True):
                if meta is None:
                    writer.write_batch(batch)
                else:
                    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
                    writer.write_with_metadata(batch, raw)
            writer.done_writing()
            # The server ends the stream once every write reached `ack_until`.
            return reader.read_all()


def put_batches(addr, table, batches, ack_until="REPLICATED", middleware=None,
                compression=None):
    """DoPut `batches` to [table]; return the PutResult app_metadata of each, parsed."""
    descriptor = flight.FlightDescriptor.for_path(table)
    with connect(addr, middleware) as client:
        writer, reader = client.do_put(
            descriptor, batches[0].schema, options(ack_until, compression))
        with closing_writer(writer):
            for batch in batches:
                writer.write_batch(batch)
            # Read the results only after the last batch: the contract does not say whether
            # a PutResult is sent as soon as its batch is in or once it reached ack_until.
            writer.done_writing()
            results = []
            while (buf := reader.read()) is not None:
                results.append(json.loads(buf.to_pybytes()))
        return results


def do_get(addr, ticket):
    """DoGet; `ticket` is a dict (sent as JSON) or raw bytes. Returns the table read and the
    LSN from each data batch's app_metadata ({"lsn": N})."""
    raw = ticket if isinstance(ticket, bytes) else json.dumps(ticket).encode()
    with connect(addr) as client:
        reader = client.do_get(flight.Ticket(raw), options())
        batches, lsns = [], []
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            if chunk.data is not None:
                batches.append(chunk.data)
                assert chunk.app_metadata is not None, "DoGet batch without {\"lsn\": N} metadata"
                lsns.append(json.loads(chunk.app_metadata.to_pybytes())["lsn"])
        return pa.Table.from_batches(batches, schema=reader.schema), lsns


def do_action(addr, name, body=b""):
    """DoAction; returns the body of the first result, parsed as JSON."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    with connect(addr) as client:
        results = list(client.do_action(flight.Action(name, body), options()))
    assert results, f"action {name!r} returned no result"
    return json.loads(results[0].body.to_pybytes())


def listed_tables(addr):
    with connect(addr) as client:
        return {tuple(p.decode() for p in info.descriptor.path)
                for info in client.list_flights(options=options())}


def first_acks(acks):
    """seq -> the first ack row (is_durability_update false) of each write."""
    first = {}
    for row in acks.to_pylist():
        if not row["is_durability_update"]:
            assert row["seq"] not in first, f"two first acks for seq {row['seq']}: {acks}"
            first[row["seq"]] = row
    return first


def level_rank(level):
    assert level in LEVELS, f"unknown durability level {level!r}"
    return LEVELS.index(level)


@contextlib.contextmanager
def raises(exc_class, *fragments):
    """pytest.raises plus: the message names each fragment (case-insensitive)."""
    with pytest.raises(exc_class) as info:
        yield info
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), \
            f"{type(info.value).__name__} message lacks {fragment!r}: {message}"


def assert_still_serving(addr):
    assert "node_id" in do_action(addr, "status")


class HeaderRecorder(flight.ClientMiddlewareFactory):
    """Records every header the server sends; pyarrow hands both the initial headers and
    the trailers (also of a failed call) to received_headers."""

    def __init__(self):
        self.received = {}

    def start_call(self, info):
        return _Recorder(self.received)


class _Recorder(flight.ClientMiddleware):
    def __init__(self, received):
        self.received = received

    def received_headers(self, headers):
        for key, values in headers.items():
            self.received.setdefault(key.lower(), []).extend(values)


# ------------------------------------------------------------------------------- tests


def test_quickstart(leader):
    result = subprocess.run(
        [sys.executable, str(QUICKSTART)], env={**os.environ, "ARKA_ADDR": leader},
        capture_output=True, text=True, timeout=2 * TIMEOUT)
    assert result.returncode == 0, f"quickstart.py failed:\n{result.stdout}\n{result.stderr}"
    # Ack lines look like "lsn=12 REPLICATED update=True ...". On a fresh cluster the final
    # level is REPLICATED; a re-run repeats (producer_id, seq), and the server may answer
    # with the level the original writes have reached since, which can be higher.
    ack_levels = {line.split()[1] for line in result.stdout.splitlines()
                  if line.startswith("lsn=")}
    assert ack_levels & {"REPLICATED", "OBJECT_STORAGE", "COMMITTED"}, result.stdout
    read_back = [line for line in result.stdout.splitlines() if line.startswith("{'id'")]
    assert len(read_back) == 6, result.stdout  # 3 batches of 2 rows, written once


def test_doexchange_acks(leader):
    table = unique_table_name()
    producer = f"pytest-{uuid.uuid4()}"
    batches = [make_batch(range(10 * i, 10 * i + i + 1)) for i in range(5)]  # 1..5 rows
    acks = write_exchange(leader, table, batches,
                          [producer_meta(producer, i) for i in range(5)], "REPLICATED")

    schema = acks.schema
    assert schema.names[:4] == ["lsn", "durability_level", "is_durability_update", "timestamp"]
    assert schema.field("lsn").type == pa.int64()
    assert schema.field("durability_level").type == pa.utf8()
    assert schema.field("is_durability_update").type == pa.bool_()
    ts = schema.field("timestamp").type
    assert pa.types.is_timestamp(ts) and ts.unit == "us" and ts.tz in ("UTC", "+00:00"), ts
    assert schema.field("table").type == pa.utf8()
    assert schema.field("rows").type == pa.int64()
    assert schema.field("seq").type == pa.int64()
    assert schema.field("term").type == pa.int64()
    assert schema.field("leader_id").type == pa.int64()

    # One first ack per write, carrying the write's table, row count and seq.
    first = first_acks(acks)
    assert sorted(first) == list(range(5)), acks.to_pylist()
    assert all(r["term"] is not None and r["leader_id"] is not None
               for r in acks.to_pylist()), acks.to_pylist()
    lsns = [first[seq]["lsn"] for seq in range(5)]
    assert all(a < b for a, b in zip(lsns, lsns[1:])), f"LSNs not increasing: {lsns}"
    for seq, batch in enumerate(batches):
        assert first[seq]["table"] == table
        assert first[seq]["rows"] == batch.num_rows

    # Per LSN, in stream order: the first ack, then one update per further level, levels
    # only rising (a level may be skipped), ending at the requested level or above.
    by_lsn = {}
    for row in acks.to_pylist():
        by_lsn.setdefault(row["lsn"], []).append(row)
    assert set(by_lsn) == set(lsns), f"acks for LSNs that were not written: {by_lsn.keys()}"
    for lsn, rows in by_lsn.items():
        assert [r["is_durability_update"] for r in rows] == [False] + [True] * (len(rows) - 1)
        ranks = [level_rank(r["durability_level"]) for r in rows]
        assert ranks == sorted(set(ranks)), f"LSN {lsn}: levels not strictly rising: {rows}"
        assert ranks[-1] >= LEVELS.index("REPLICATED"), \
            f"stream ended before LSN {lsn} was REPLICATED: {rows}"

    got, _ = do_get(leader, {"table": table, "min_lsn": lsns[-1]})
    assert got.equals(pa.Table.from_batches(batches))


def test_initial_acks_arrive_in_write_order(leader):
    """A plain client (no producer metadata) pairs its k-th write with the k-th initial ack
    (DESIGN.md section 4), so each initial ack must name that write, in every session."""
    count = 300
    for session in range(5):
        table = unique_table_name()
        batches = [make_batch(range(10 * k, 10 * k + k % 7 + 1)) for k in range(count)]
        acks = write_exchange(leader, table, batches, [None] * count, "REPLICATED")
        initial = [row for row in acks.to_pylist() if not row["is_durability_update"]]
        lsns = [row["lsn"] for row in initial]
        assert len(lsns) == count, f"session {session}: {len(lsns)} initial acks for {count} writes"
        assert all(a < b for a, b in zip(lsns, lsns[1:])), \
            f"session {session}: initial acks out of write order: {lsns}"
        assert [row["rows"] for row in initial] == [b.num_rows for b in batches]
        # The LSN of the k-th initial ack holds the k-th write.
        got, got_lsns = do_get(leader, {"table": table, "min_lsn": lsns[-1]})
        by_lsn = dict(zip(got_lsns, got.to_batches()))
        for k, (lsn, batch) in enumerate(zip(lsns, batches)):
            assert by_lsn[lsn].equals(batch), f"session {session}: write {k} is not at LSN {lsn}"


def test_doput_flightinfo_doget_listflights_drop(addrs, leader):
    table = unique_table_name()
    batches = [make_batch(range(3 * i, 3 * i + 3)) for i in range(3)]
    expected = pa.Table.from_batches(batches)

    results = put_batches(leader, table, batches, "REPLICATED")
    assert len(results) == len(batches), results
    lsns = [r["lsn"] for r in results]
    assert all(a < b for a, b in zip(lsns, lsns[1:])), f"LSNs not increasing: {lsns}"
    for r in results:
        level_rank(r["durability_level"])
    max_lsn = max(lsns)

    with connect(leader) as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path(table), options())
    assert info.schema.equals(SCHEMA), info.schema
    assert info.total_records == expected.num_rows
    assert info.endpoints, "GetFlightInfo returned no endpoint"
    endpoint = info.endpoints[0]
    assert endpoint.ticket.ticket, "endpoint without a ticket"
    assert endpoint.locations, "endpoint lists no replica"

    # The ticket as given, on the leader (REPLICATED means applied there).
    got, batch_lsns = do_get(leader, endpoint.ticket.ticket)
    assert got.equals(expected)
    assert batch_lsns == sorted(batch_lsns) and set(batch_lsns) <= set(lsns), batch_lsns

    # The same ticket plus min_lsn on every node: read-your-writes on followers too.
    ticket = json.loads(endpoint.ticket.ticket)
    ticket["min_lsn"] = max_lsn
    for addr in addrs:
        got, _ = do_get(addr, ticket)
        assert got.equals(expected), f"{addr} returned {got.to_pylist()}"

    # with_lsn: an `_lsn` column holding each row's write LSN.
    got, _ = do_get(leader, {"table": table, "with_lsn": True})
    assert got.column("_lsn").to_pylist() == [lsn for lsn, b in zip(lsns, batches)
                                              for _ in range(b.num_rows)]
    assert got.drop_columns(["_lsn"]).equals(expected)

    assert (table,) in listed_tables(leader)

    do_action(leader, "drop_table", {"name": table})
    assert (table,) not in listed_tables(leader)
    with raises(NOT_FOUND, table):
        do_get(leader, {"table": table})


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_writes_are_taken_and_read_back_from_every_node(addrs, leader, codec):
    """Batches pyarrow compresses (IpcWriteOptions(compression=...)) are taken on DoPut and
    DoExchange and read back as written, from every node."""
    table = unique_table_name()
    batches = [make_batch(range(100 * i, 100 * i + 100)) for i in range(3)]
    results = put_batches(leader, table, batches[:2], compression=codec)
    acks = write_exchange(leader, table, batches[2:], [None], compression=codec)
    last = max([r["lsn"] for r in results] + acks.column("lsn").to_pylist())
    for addr in addrs:
        got, _ = do_get(addr, {"table": table, "min_lsn": last})
        assert got.equals(pa.Table.from_batches(batches)), f"{addr}: {got.num_rows} rows"


def test_a_compressed_batch_is_held_to_the_batch_limit_once_decompressed(leader):
    """80 MB of zeros travel as a few KB of zstd; decompressed they are over batch-bytes-max
    (64 MiB), so the batch is refused before it is decoded."""
    zeros = pa.record_batch([pa.repeat(0, 10_000_000)], names=["n"])
    with raises(RESOURCE_EXHAUSTED, "decompresses to 80000000 bytes", "batch-bytes-max"):
        put_batches(leader, unique_table_name(), [zeros], compression="zstd")
    assert_still_serving(leader)


def test_idempotent_retry(leader):
    table = unique_table_name()
    producer = f"pytest-{uuid.uuid4()}"
    original, fresh = make_batch([1, 2, 3]), make_batch([4])

    first = first_acks(write_exchange(leader, table, [original], [producer_meta(producer, 0)]))
    # A new session retries seq 0 and then sends a new seq 1.
    retry = first_acks(write_exchange(leader, table, [original, fresh],
                                      [producer_meta(producer, 0), producer_meta(producer, 1)]))
    assert retry[0]["lsn"] == first[0]["lsn"], "a retried (producer_id, seq) got a new LSN"
    assert retry[1]["lsn"] > first[0]["lsn"]

    got, _ = do_get(leader, {"table": table, "min_lsn": retry[1]["lsn"]})
    assert got.equals(pa.Table.from_batches([original, fresh])), got.to_pylist()


def test_a_retry_of_a_write_to_a_dropped_table_is_not_found_and_not_written_again(leader):
    table = unique_table_name()
    producer = f"pytest-{uuid.uuid4()}"
    batch = make_batch([1, 2])
    write_exchange(leader, table, [batch], [producer_meta(producer, 0)])
    do_action(leader, "drop_table", {"name": table})

    with raises(NOT_FOUND, "dropped since", "nothing was written again"):
        write_exchange(leader, table, [batch], [producer_meta(producer, 0)])
    assert (table,) not in listed_tables(leader), "the retry made the table again"
    # The producer goes on with its next seq, into a new table of that name.
    fresh = first_acks(write_exchange(leader, table, [batch], [producer_meta(producer, 1)]))
    got, _ = do_get(leader, {"table": table, "min_lsn": fresh[1]["lsn"]})
    assert got.num_rows == 2, got.to_pylist()


def test_producer_sessions_resume_above_the_last_write_and_fence_the_old_instance(leader):
    """register_producer starts a new session of a producer id: it returns the epoch the
    writes carry and the seq to go on from, so a restarted producer neither collides with
    its old seqs nor gets their LSNs back; the older instance's writes are then refused
    (FAILED_PRECONDITION, "fenced") and never applied."""
    table = unique_table_name()
    producer = f"pytest-{uuid.uuid4()}"

    def meta(seq, session):
        return {"producer_id": producer, "seq": seq, "epoch": session["epoch"]}

    old = do_action(leader, "register_producer", {"producer_id": producer})
    assert old["producer_id"] == producer and old["next_seq"] == 0, old
    before = first_acks(write_exchange(leader, table, [make_batch([0]), make_batch([1])],
                                       [meta(0, old), meta(1, old)]))
    new = do_action(leader, "register_producer", {"producer_id": producer})
    assert new["epoch"] > old["epoch"] and new["next_seq"] == 2, new
    with raises(FAILED_PRECONDITION, "fenced"):
        write_exchange(leader, table, [make_batch([99])], [meta(2, old)])
    with raises(FAILED_PRECONDITION, "epoch"):
        write_exchange(leader, table, [make_batch([98])], [producer_meta(producer, 2)])
    after = first_acks(write_exchange(leader, table, [make_batch([2])], [meta(2, new)]))
    assert after[2]["lsn"] > before[1]["lsn"], (before, after)
    got, _ = do_get(leader, {"table": table, "min_lsn": after[2]["lsn"]})
    assert got.column("id").to_pylist() == [0, 1, 2], got.to_pylist()


def test_writes_to_follower_are_redirected(leader, followers):
    table = unique_table_name()
    batch = make_batch([1])
    for follower in followers:
        for write in (lambda mw: write_exchange(follower, table, [batch], [None], middleware=mw),
                      lambda mw: put_batches(follower, table, [batch], middleware=mw)):
            recorder = HeaderRecorder()
            with raises(UNAVAILABLE, "not leader; leader is grpc://") as err:
                write(recorder)
            match = re.search(r"leader is (grpc://[^\s;,]+:\d+)", str(err.value))
            assert match, str(err.value)
            named = match.group(1)
            assert recorder.received.get("x-arka-leader") == [named], recorder.received
            # The named leader takes the write.
            put_batches(named, table, [batch])


def test_status_and_actions(addrs, leader):
    with connect(leader) as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path("status"), options())
        status = json.loads(info.app_metadata)
        assert STATUS_KEYS <= status.keys(), f"status lacks {STATUS_KEYS - status.keys()}"
        assert info.endpoints, "status FlightInfo has no endpoint"
        row = client.do_get(info.endpoints[0].ticket, options()).read_all()
        assert row.num_rows == 1, row

        actions = {a.type: a.description for a in client.list_actions(options())}
        assert REQUIRED_ACTIONS <= actions.keys(), f"missing {REQUIRED_ACTIONS - actions.keys()}"
        assert all(actions[a] for a in REQUIRED_ACTIONS), f"actions without description: {actions}"

    # Every node answers `status` and all agree on the leader, which is the first address.
    statuses = [do_action(addr, "status") for addr in addrs]
    for addr, st in zip(addrs, statuses):
        assert STATUS_KEYS <= st.keys(), f"{addr}: status lacks {STATUS_KEYS - st.keys()}"
        assert st["leader_id"] == statuses[0]["node_id"], f"{addr} has another leader: {st}"


# Bad input: each gets the documented status and a message naming the problem, and the
# node keeps serving.


def test_bad_ticket(leader):
    with raises(INVALID_ARGUMENT, "ticket"):
        do_get(leader, b"{not json")
    assert_still_serving(leader)


def test_unknown_table(leader):
    table = unique_table_name("missing")
    with raises(NOT_FOUND, "not found", table):
        do_get(leader, {"table": table})
    assert_still_serving(leader)


def test_unknown_action(leader):
    with raises(NOT_FOUND, "nope"):
        do_action(leader, "nope")
    assert_still_serving(leader)


def test_bad_table_name(leader):
    batch = make_batch([1])
    with raises(INVALID_ARGUMENT, "[a-z][a-z0-9_]"):
        write_exchange(leader, "Bad-Name", [batch], [None])
    with raises(INVALID_ARGUMENT, "[a-z][a-z0-9_]"):
        put_batches(leader, "Bad-Name", [batch])
    assert_still_serving(leader)


def test_schema_mismatch(leader):
    table = unique_table_name()
    put_batches(leader, table, [make_batch([1])])
    other = pa.schema([("id", pa.utf8()), ("msg", pa.utf8())])
    with raises(INVALID_ARGUMENT, "expected", "got"):
        put_batches(leader, table, [pa.record_batch([["x"], ["y"]], schema=other)])
    assert_still_serving(leader)


def test_types_the_lake_holds_widened_reach_committed_and_read_back_as_written(leader):
    """uint64 and timestamp[ms] have no Iceberg type of their own: they are tiered widened
    (decimal(20,0), timestamp[us]) and read back as written, and the table reaches
    COMMITTED (DoExchange waits for COMMITTED by default) like any other."""
    table = unique_table_name()
    schema = pa.schema([("big", pa.uint64()), ("at", pa.timestamp("ms")),
                        ("kind", pa.dictionary(pa.int32(), pa.utf8()))])
    batch = pa.record_batch([
        pa.array([2**64 - 1, 0], pa.uint64()),
        pa.array([1_700_000_000_123, -1], pa.timestamp("ms")),
        pa.array(["a", "b"]).dictionary_encode(),
    ], schema=schema)
    acks = write_exchange(leader, table, [batch], [None], ack_until=None)
    levels = {row["durability_level"] for row in acks.to_pylist()}
    assert "COMMITTED" in levels, acks.to_pylist()
    got, _ = do_get(leader, {"table": table, "min_lsn": acks["lsn"][0].as_py()})
    assert got.schema == schema
    assert got.equals(pa.Table.from_batches([batch]))
    plain = unique_table_name()
    acks = write_exchange(leader, plain, [make_batch([1])], [None], ack_until="COMMITTED")
    assert "COMMITTED" in {row["durability_level"] for row in acks.to_pylist()}


def test_types_the_lake_cannot_hold_are_refused_by_column(leader):
    table = unique_table_name()
    union = pa.UnionArray.from_dense(pa.array([0, 1], pa.int8()), pa.array([0, 0], pa.int32()),
                                     [pa.array([1]), pa.array(["x"])], ["n", "s"])
    batch = pa.record_batch([pa.array([1, 2]), union], names=["id", "either"])
    with raises(INVALID_ARGUMENT, '"either"', "union"):
        write_exchange(leader, table, [batch], [None])
    with raises(INVALID_ARGUMENT, '"either"', "union"):
        put_batches(leader, table, [batch])
    reserved = pa.record_batch([pa.array([1]), pa.array([2])], names=["id", "_seq"])
    with raises(INVALID_ARGUMENT, '"_seq"', "reserved"):
        write_exchange(leader, table, [reserved], [None])
    assert (table,) not in listed_tables(leader)
    assert_still_serving(leader)


def test_durability_status_of_a_write_the_idempotency_window_forgot(leader):
    """A write older than its producer's window (100,000 seqs) is found at its LSN, or is
    "unknown" without one: never ABORTED, which would make the client resend a write that
    is there."""
    table = unique_table_name()
    producer = f"pytest-{uuid.uuid4()}"
    acks = write_exchange(leader, table, [make_batch([1]), make_batch([2])],
                          [producer_meta(producer, 0), producer_meta(producer, 10**6)])
    first = first_acks(acks)[0]["lsn"]
    answer = do_action(leader, "get_durability_status",
                       {"producer_id": producer, "seq": 0, "last_known_lsn": first})
    assert answer["status"] == "written" and answer["lsn"] == first, answer
    answer = do_action(leader, "get_durability_status", {"producer_id": producer, "seq": 0})
    assert answer["status"] == "unknown" and answer["level"] is None, answer
    answer = do_action(leader, "get_durability_status",
                       {"producer_id": producer, "seq": 10**6 - 1})
    assert answer["status"] == "not_written", answer


def test_durability_status_of_a_write_by_its_lsn_and_leader(leader):
    """An ack's lsn, term and leader_id name its write: get_durability_status says it is
    written, and ABORTED when the entry at that LSN was appended by another leader (here a
    term that never led there; the cluster tests make a real leader change)."""
    acks = write_exchange(leader, unique_table_name(), [make_batch([1])], [None], "REPLICATED")
    ack = acks.to_pylist()[0]
    query = {"last_known_lsn": ack["lsn"], "term": ack["term"], "leader_id": ack["leader_id"]}
    answer = do_action(leader, "get_durability_status", query)
    assert answer["status"] == "written" and answer["level"] in LEVELS[2:], answer
    assert ack["term"] <= do_action(leader, "status")["term"], ack

    with pytest.raises(ABORTED, match="aborted.*lost in a leader change"):
        do_action(leader, "get_durability_status", {**query, "term": ack["term"] + 1000})
    with pytest.raises(INVALID_ARGUMENT, match="term and leader_id go together"):
        do_action(leader, "get_durability_status",
                  {"last_known_lsn": ack["lsn"], "term": ack["term"]})


def exchange_with_watermarks(addr, table, batches, ack_until):
    """Writes `batches` to `table` in one DoExchange with watermark rows; returns its acks."""
    descriptor = flight.FlightDescriptor.for_path("streaming_write", table)
    headers = [(b"x-arka-ack-until", ack_until.encode()), (b"x-arka-watermarks", b"true")]
    with connect(addr) as client:
        writer, reader = client.do_exchange(
            descriptor, flight.FlightCallOptions(timeout=TIMEOUT, headers=headers))
        with closing_writer(writer):
            writer.begin(batches[0].schema)
            for batch in batches:
                writer.write_batch(batch)
            writer.done_writing()
            return reader.read_all()


def test_watermark_rows_on_request(leader):
    """With x-arka-watermarks: true the ack stream also carries watermark rows
    (is_watermark_update true, lsn = the watermark, durability_level = its level); the
    rows of the writes are as without the header, and without it the schema is unchanged."""
    table = unique_table_name()
    plain = write_exchange(leader, table, [make_batch([0])], [None])
    assert "is_watermark_update" not in plain.schema.names
    batches = [make_batch([k]) for k in range(20)]
    descriptor = flight.FlightDescriptor.for_path("streaming_write", table)
    acks = exchange_with_watermarks(leader, table, batches, "REPLICATED")
    assert acks.schema.field("is_watermark_update").type == pa.bool_()
    rows = acks.to_pylist()
    marks = [r for r in rows if r["is_watermark_update"]]
    writes = [r for r in rows if not r["is_watermark_update"]]
    # The first look reports every watermark that is above 0: the earlier write made some.
    assert {m["durability_level"] for m in marks} >= {"MEMORY", "REPLICATED"}, marks
    for level in LEVELS:
        lsns = [m["lsn"] for m in marks if m["durability_level"] == level]
        assert lsns == sorted(set(lsns)), f"{level} watermark rows not rising: {lsns}"
    assert all(m["is_durability_update"] and m["table"] is None for m in marks), marks
    initial = [r for r in writes if not r["is_durability_update"]]
    assert len(initial) == len(batches), writes
    # The last rows report the watermarks as the stream ends: the writes are REPLICATED.
    replicated = [m["lsn"] for m in marks if m["durability_level"] == "REPLICATED"]
    assert replicated[-1] >= max(r["lsn"] for r in writes), (replicated, writes)
    assert all(r["table"] == table for r in writes)
    with raises(INVALID_ARGUMENT, "x-arka-watermarks"):
        with connect(leader) as client:
            bad = flight.FlightCallOptions(timeout=TIMEOUT, headers=[(b"x-arka-watermarks", b"yes")])
            writer, reader = client.do_exchange(descriptor, bad)
            with closing_writer(writer):
                writer.begin(batches[0].schema)
                writer.write_batch(batches[0])
                writer.done_writing()
                reader.read_all()


def test_bad_producer_metadata(leader):
    with raises(INVALID_ARGUMENT, "producer_id"):
        write_exchange(leader, unique_table_name(), [make_batch([1])], [b'{"producer_id": 5}'])
    assert_still_serving(leader)


def wait_for(what, check, deadline_s=TIMEOUT):
    """Polls `check` until it returns a true value, failing after `deadline_s` seconds."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < end, f"{what}: not within {deadline_s} s"
        time.sleep(0.1)


def held_back(addr):
    return {h["table"]: h for h in do_action(addr, "status")["tier"]["held_back"]}


def test_a_table_the_catalog_refuses_is_held_back_alone(addrs, leader):
    """A table whose Iceberg commit keeps failing (a regular file where the catalog puts its
    directory) is held back alone: a writer waiting for COMMITTED on it gets an error naming
    it, another table's writer gets COMMITTED, and status lists it until the catalog takes
    it. The cluster's hold time is short (tier-hold-table-after-ms, set by the test runner)."""
    store = do_action(leader, "status")["tier"]["object_store"]
    table = unique_table_name()
    blocker = pathlib.Path(store.removeprefix("file://")) / "warehouse" / "arka" / table
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a directory")
    try:
        with raises(FAILED_PRECONDITION, f"table {table} is held back", "Not a directory"):
            write_exchange(leader, table, [make_batch([1])], [None], ack_until="COMMITTED")
        plain = unique_table_name()
        acks = write_exchange(leader, plain, [make_batch([1])], [None], ack_until="COMMITTED")
        assert "COMMITTED" in {row["durability_level"] for row in acks.to_pylist()}
        for addr in addrs:
            wait_for(f"{addr} to list {table} as held back", lambda: table in held_back(addr))
        # flush commits every other table and names the held one.
        flushed = do_action(leader, "flush")
        assert [h["table"] for h in flushed["held_back"]] == [table], flushed
        # The COMMITTED watermark rows of a stream follow its own table past the held one.
        acks = exchange_with_watermarks(leader, plain, [make_batch([2])], "COMMITTED").to_pylist()
        written = max(r["lsn"] for r in acks if not r["is_watermark_update"])
        committed = [r["lsn"] for r in acks
                     if r["is_watermark_update"] and r["durability_level"] == "COMMITTED"]
        assert committed and committed[-1] >= written, acks
    finally:
        blocker.unlink()
    for addr in addrs:
        wait_for(f"{addr} to release {table}", lambda: not held_back(addr))
    acks = write_exchange(leader, table, [make_batch([2])], [None], ack_until="COMMITTED")
    assert "COMMITTED" in {row["durability_level"] for row in acks.to_pylist()}
