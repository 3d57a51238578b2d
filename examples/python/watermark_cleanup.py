"""Watermark-based cleanup: keep each write buffered (to resend, or as the source's undo
log) until the cluster's COMMITTED watermark passes its LSN, then drop it, without
tracking every write's later acks. With plain pyarrow.

    python3 examples/python/watermark_cleanup.py grpc://127.0.0.1:8815

With the header x-arka-watermarks: true the ack stream also carries watermark rows
(is_watermark_update = true, lsn = the watermark, durability_level = its level) whenever a
watermark moved. COMMITTED needs tiering, which `arka dev` has (a commit every 2 s).
"""

import json
import sys

import pyarrow as pa
import pyarrow.flight as flight

WRITES = 20


def leader_of(addr):
    info = flight.connect(addr).get_flight_info(
        flight.FlightDescriptor.for_path("streaming_write"))
    return info.endpoints[0].locations[0].uri.decode()


def main():
    seed = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:8815"
    client = flight.connect(leader_of(seed))
    headers = [(b"x-arka-ack-until", b"COMMITTED"), (b"x-arka-watermarks", b"true")]
    options = flight.FlightCallOptions(headers=headers, timeout=120)
    writer, reader = client.do_exchange(
        flight.FlightDescriptor.for_path("streaming_write", "watermark_cleanup"), options)
    schema = pa.schema([("n", pa.int64())])
    batches = [pa.record_batch([[n]], schema=schema) for n in range(WRITES)]
    writer.begin(schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.done_writing()

    # Without producer metadata the k-th first ack row is the k-th write.
    pending = list(batches)  # writes without a final LSN yet, in write order
    buffered = {}  # lsn -> batch, until COMMITTED passes it
    dropped = 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        for row in chunk.data.to_pylist() if chunk.data is not None else []:
            if row["is_watermark_update"]:
                if row["durability_level"] == "COMMITTED":
                    done = [lsn for lsn in buffered if lsn <= row["lsn"]]
                    for lsn in done:
                        del buffered[lsn]
                    dropped += len(done)
                    print(f"COMMITTED watermark {row['lsn']}: dropped {len(done)}, "
                          f"{len(buffered)} still buffered")
            elif not row["is_durability_update"]:
                buffered[row["lsn"]] = pending.pop(0)
    writer.close()
    assert not pending, "every write got its first ack"
    # Before it ends, the stream reports the watermarks as they stand then: every write is
    # COMMITTED, so nothing is left to keep.
    assert not buffered, f"still buffered after the last watermark row: {sorted(buffered)}"
    print(f"{WRITES} writes committed and dropped from the buffer ({dropped})")

if __name__ == "__main__":
    main()
