"""arka quick start with plain pyarrow: stream three batches in, wait until they are
replicated, then read the table back. Run against `arka dev` (or set ARKA_ADDR)."""
import json
import os

import pyarrow as pa
import pyarrow.flight as flight

client = flight.connect(os.environ.get("ARKA_ADDR", "grpc://127.0.0.1:8815"))

# Write: DoExchange on ["streaming_write", TABLE]. The header asks the server to keep
# the ack stream open until every write is REPLICATED (fsynced on a majority).
options = flight.FlightCallOptions(headers=[(b"x-arka-ack-until", b"REPLICATED")])
descriptor = flight.FlightDescriptor.for_path("streaming_write", "quickstart")
writer, reader = client.do_exchange(descriptor, options)

schema = pa.schema([("id", pa.int64()), ("msg", pa.utf8())])
writer.begin(schema)
for seq in range(3):
    ids = [2 * seq, 2 * seq + 1]
    batch = pa.record_batch([ids, [f"hello {i}" for i in ids]], schema=schema)
    # (producer_id, seq) makes retries idempotent: a repeat returns the original LSN.
    meta = json.dumps({"producer_id": "quickstart", "seq": seq}).encode()
    writer.write_with_metadata(batch, meta)
writer.done_writing()

# Acks: one row per write per durability level reached, several writes per ack batch.
# The server ends the stream once every write reached REPLICATED.
for ack in reader.read_all().to_pylist():
    print(f"lsn={ack['lsn']} {ack['durability_level']:<10} "
          f"update={ack['is_durability_update']!s:<5} at={ack['timestamp']:%H:%M:%S.%f} "
          f"table={ack['table']} rows={ack['rows']} seq={ack['seq']}")
writer.close()

# Read: DoGet works on any node; with_lsn adds each row's LSN as an `_lsn` column.
ticket = flight.Ticket(json.dumps({"table": "quickstart", "with_lsn": True}).encode())
for row in client.do_get(ticket).read_all().to_pylist():
    print(row)
