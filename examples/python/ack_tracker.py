"""AckTracker: keep writes streaming and wait for the acknowledgement of each one you care
about at the level you need, with plain pyarrow.

    python3 examples/python/ack_tracker.py grpc://127.0.0.1:8815

The producer registers a session (register_producer), so its writes carry an epoch and
seqs that are its own; acks are read on a second thread, as docs/api.md advises for a
long-running producer, and correlated with writes by seq.
"""

import json
import sys
import threading
import uuid

import pyarrow as pa
import pyarrow.flight as flight

LEVELS = ["MEMORY", "LOCAL_DISK", "REPLICATED", "OBJECT_STORAGE", "COMMITTED"]
WRITES = 200


class AckTracker:
    """The highest level each seq reached and its LSN there (final from REPLICATED on)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._reached = {}  # seq -> (level index, lsn)
        self._error = None
        self._ended = False

    def record(self, acks):
        with self._cond:
            for row in acks.to_pylist():
                level = LEVELS.index(row["durability_level"])
                if level > self._reached.get(row["seq"], (-1, None))[0]:
                    self._reached[row["seq"]] = (level, row["lsn"])
            self._cond.notify_all()

    def end(self, error=None):
        with self._cond:
            self._ended, self._error = True, error
            self._cond.notify_all()

    def wait(self, seq, level, timeout=60.0):
        """The LSN of write `seq` once it reached `level`."""
        want = LEVELS.index(level)
        with self._cond:
            done = self._cond.wait_for(
                lambda: self._reached.get(seq, (-1, None))[0] >= want or self._ended, timeout)
            reached, lsn = self._reached.get(seq, (-1, None))
            if reached >= want:
                return lsn
            if self._error is not None:
                raise self._error
            raise TimeoutError(f"seq {seq} not {level} after {timeout} s" if not done
                               else f"the stream ended before seq {seq} was {level}")


def read_acks(reader, tracker):
    try:
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            if chunk.data is not None:
                tracker.record(chunk.data)
        tracker.end()
    except Exception as error:  # the stream failed: every waiter learns why
        tracker.end(error)


def leader_of(addr):
    info = flight.connect(addr).get_flight_info(
        flight.FlightDescriptor.for_path("streaming_write"))
    return info.endpoints[0].locations[0].uri.decode()


def register(client, producer_id):
    action = flight.Action("register_producer", json.dumps({"producer_id": producer_id}).encode())
    return json.loads(next(iter(client.do_action(action))).body.to_pybytes())


def main():
    seed = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:8815"
    client = flight.connect(leader_of(seed))
    session = register(client, f"ack-tracker-{uuid.uuid4()}")
    tracker = AckTracker()
    options = flight.FlightCallOptions(headers=[(b"x-arka-ack-until", b"REPLICATED")])
    writer, reader = client.do_exchange(
        flight.FlightDescriptor.for_path("streaming_write", "ack_tracker"), options)
    acks = threading.Thread(target=read_acks, args=(reader, tracker))
    acks.start()
    schema = pa.schema([("n", pa.int64())])
    writer.begin(schema)
    first = session["next_seq"]
    lsns = {}
    for seq in range(first, first + WRITES):
        meta = {"producer_id": session["producer_id"], "seq": seq, "epoch": session["epoch"]}
        writer.write_with_metadata(pa.record_batch([[seq]], schema=schema),
                                   json.dumps(meta).encode())
        # Wait for every 50th, as a producer that checkpoints its source would.
        if (seq - first) % 50 == 49:
            lsns[seq] = tracker.wait(seq, "REPLICATED")
            print(f"seq {seq} is REPLICATED at lsn {lsns[seq]}")
    writer.done_writing()
    for seq in range(first, first + WRITES):
        lsns[seq] = tracker.wait(seq, "REPLICATED")
    acks.join()
    writer.close()
    ordered = [lsns[s] for s in range(first, first + WRITES)]
    assert ordered == sorted(set(ordered)), "LSNs rise in write order"
    print(f"{WRITES} writes REPLICATED at lsns {ordered[0]}..{ordered[-1]}")


if __name__ == "__main__":
    main()
