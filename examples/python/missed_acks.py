"""Missed acks after a reconnect: a producer's stream broke before it saw every ack. It asks
get_durability_status for its writes above the last LSN it knows, page by page, resends
only the writes that are not there (same seq: a repeat cannot duplicate), and ends with
each write in the table exactly once. With plain pyarrow.

    python3 examples/python/missed_acks.py grpc://127.0.0.1:8815
"""

import json
import sys
import uuid

import pyarrow as pa
import pyarrow.flight as flight

WRITES = 12
PAGE = 4
SCHEMA = pa.schema([("n", pa.int64())])
TABLE = f"missed_acks_{uuid.uuid4().hex[:8]}"  # a table of its own per run


def leader_of(addr):
    info = flight.connect(addr).get_flight_info(
        flight.FlightDescriptor.for_path("streaming_write"))
    return info.endpoints[0].locations[0].uri.decode()


def action(client, name, body):
    result = next(iter(client.do_action(flight.Action(name, json.dumps(body).encode()))))
    return json.loads(result.body.to_pybytes())


def open_stream(client, session, seqs, done=True):
    """Sends the writes `seqs` (value = seq), and unless `done` is false says it sent them
    all; returns the writer and the ack reader."""
    options = flight.FlightCallOptions(headers=[(b"x-arka-ack-until", b"REPLICATED")])
    writer, reader = client.do_exchange(
        flight.FlightDescriptor.for_path("streaming_write", TABLE), options)
    writer.begin(SCHEMA)
    for seq in seqs:
        meta = {"producer_id": session["producer_id"], "seq": seq, "epoch": session["epoch"]}
        writer.write_with_metadata(pa.record_batch([[seq]], schema=SCHEMA),
                                   json.dumps(meta).encode())
    if done:
        writer.done_writing()
    return writer, reader


def replicated_acks(reader, stop_after=None):
    """seq -> LSN of the REPLICATED ack rows read, up to `stop_after` of them."""
    seen = {}
    while stop_after is None or len(seen) < stop_after:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        for row in chunk.data.to_pylist() if chunk.data is not None else []:
            if row["durability_level"] == "REPLICATED":
                seen[row["seq"]] = row["lsn"]
    return seen


def written_above(client, producer_id, last_known_lsn):
    """seq -> (LSN, level) of the producer's writes above `last_known_lsn`, every page."""
    found, after = {}, last_known_lsn
    while after is not None:
        page = action(client, "get_durability_status",
                      {"producer_id": producer_id, "last_known_lsn": after, "limit": PAGE})
        for event in page["events"]:
            found[event["seq"]] = (event["lsn"], event["level"])
        after = page["next_last_known_lsn"]
    return found


def main():
    seed = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:8815"
    client = flight.connect(leader_of(seed))
    session = action(client, "register_producer", {"producer_id": f"missed-{uuid.uuid4()}"})
    seqs = list(range(session["next_seq"], session["next_seq"] + WRITES))

    # The stream breaks after three acks, while the producer is still sending: it does not
    # know what became of the rest of what it sent, and has more to send.
    writer, reader = open_stream(client, session, seqs[:WRITES - 4], done=False)
    known = replicated_acks(reader, stop_after=3)
    reader.cancel()
    try:
        writer.close()
    except flight.FlightError:
        pass  # the cancelled call's status
    print(f"stream broke after acks of seqs {sorted(known)}")

    # Reconnect: ask for everything above the last LSN known, then resend what is missing.
    found = written_above(client, session["producer_id"], max(known.values()))
    print(f"found {len(found)} more written: {sorted(found)}")
    missing = [s for s in seqs if s not in known and s not in found]
    lsns = list(known.values()) + [lsn for lsn, _ in found.values()]
    if missing:
        writer, reader = open_stream(client, session, missing)
        resent = replicated_acks(reader)
        writer.close()
        print(f"resent {missing}: now at lsns {[resent[s] for s in missing]}")
        lsns += resent.values()

    # Any node reads its writes back once it applied the last of them (min_lsn).
    ticket = {"table": TABLE, "min_lsn": max(lsns)}
    values = flight.connect(seed).do_get(
        flight.Ticket(json.dumps(ticket).encode())).read_all().column("n").to_pylist()
    assert sorted(values) == seqs, f"each write exactly once, got {sorted(values)}"
    print(f"all {WRITES} writes in the table exactly once")


if __name__ == "__main__":
    main()
