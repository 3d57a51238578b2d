"""Plain pyarrow against arka: discover the leader, write, handle the redirect error, and
read your own write from a follower.

    python3 examples/python/leader_redirect.py grpc://127.0.0.1:8815,grpc://127.0.0.1:8816

No arka library is needed: this is the Flight API of docs/api.md.
"""

import json
import re
import sys

import pyarrow as pa
import pyarrow.flight as flight


def leader_of(addr):
    """GetFlightInfo ["streaming_write"] on any node names the leader."""
    info = flight.connect(addr).get_flight_info(
        flight.FlightDescriptor.for_path("streaming_write"))
    return info.endpoints[0].locations[0].uri.decode()


def put(addr, table, batch):
    """DoPut one batch; returns its LSN (acked REPLICATED by default)."""
    client = flight.connect(addr)
    writer, reader = client.do_put(
        flight.FlightDescriptor.for_path(table), batch.schema)
    try:
        writer.write_batch(batch)
        writer.done_writing()
        ack = reader.read()
    finally:
        # A failed call (such as the redirect) raises its error here at the latest.
        writer.close()
    if ack is None:
        raise RuntimeError("the server sent no PutResult")
    return json.loads(ack.to_pybytes())["lsn"]


def put_following_redirects(addr, table, batch, attempts=10):
    """A write sent to a follower fails with UNAVAILABLE "not leader; leader is URI":
    retry it at the URI the message names."""
    for _ in range(attempts):
        try:
            return put(addr, table, batch)
        except flight.FlightUnavailableError as e:
            message = str(e)
            if "leader is grpc://" not in message:
                raise  # no leader known yet (election): a real client backs off and retries
            addr = re.search(r"leader is (grpc://[^\s;,]+:\d+)", message).group(1)
            print(f"redirected to {addr}")
    raise RuntimeError("no leader accepted the write")


def main():
    seeds = (sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:8815").split(",")
    leader = leader_of(seeds[0])
    print(f"leader is {leader}")
    followers = [s for s in seeds if s != leader]

    batch = pa.record_batch({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    # Send to a follower on purpose, to show the redirect.
    lsn = put_following_redirects(followers[0] if followers else leader, "example", batch)
    print(f"written at lsn {lsn}")

    # Read it back from a follower: min_lsn makes the follower wait until it applied it.
    reader = flight.connect(followers[0] if followers else leader)
    ticket = flight.Ticket(json.dumps(
        {"table": "example", "from_lsn": lsn, "to_lsn": lsn, "min_lsn": lsn}).encode())
    table = reader.do_get(ticket).read_all()
    assert table.to_pydict() == batch.to_pydict(), table
    print(f"read {table.num_rows} rows back from {followers[0] if followers else leader}")


if __name__ == "__main__":
    main()
