#!/usr/bin/env python3
"""Saturating load from a plain pyarrow client: one DoExchange stream to the leader, one
pre-built batch of --size bytes sent as fast as the stream takes it for --seconds, acks read
on a second thread. A write counts once its REPLICATED ack arrives. Any error the stream
ends with (a "not leader" or lease refusal among them) is reported, and so is how far the
Raft term moved and the CPU the nodes spent per write (when they run on this machine). The
payload repeats one random KiB, so that the tiered Parquet files of a long soak stay small.

    python3 benches/pyarrow_load.py --addr grpc://127.0.0.1:8815 --size 1024 --seconds 300

Prints one JSON line. Exits 1 if the stream failed."""
import argparse
import json
import os
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight

CLK = os.sysconf("SC_CLK_TCK")


def status(client):
    result = next(client.do_action(flight.Action("status", b"")))
    return json.loads(result.body.to_pybytes())


def node_pids(leader):
    """The pid of every member, or None unless all of them run on this machine."""
    pids = []
    for member in status(leader)["members"]:
        pid = status(flight.connect(member["flight_location"])).get("pid")
        if pid is None or not os.path.exists(f"/proc/{pid}/stat"):
            return None
        pids.append(pid)
    return pids


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", default="grpc://127.0.0.1:8815")
    ap.add_argument("--size", type=int, default=1024, help="bytes of data per write")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--table", default="pyarrow_load")
    a = ap.parse_args()

    info = flight.connect(a.addr).get_flight_info(
        flight.FlightDescriptor.for_path("streaming_write"))
    leader = flight.connect(info.endpoints[0].locations[0].uri.decode())
    pids = node_pids(leader)
    term_before = status(leader)["term"]
    cpu_before = cpu_seconds(pids) if pids else None

    schema = pa.schema([("v", pa.binary())])
    block = os.urandom(1024)
    payload = (block * (a.size // len(block) + 1))[: a.size]
    batch = pa.record_batch([pa.array([payload], pa.binary())], schema=schema)
    # The call's deadline is past the load, with room for the last acks.
    options = flight.FlightCallOptions(
        headers=[(b"x-arka-ack-until", b"REPLICATED")], timeout=a.seconds + 120)
    writer, reader = leader.do_exchange(
        flight.FlightDescriptor.for_path("streaming_write", a.table), options)
    writer.begin(schema)
    acked, errors = [0], []

    def read_acks():
        try:
            for chunk in reader:
                levels = chunk.data.column("durability_level").to_pylist()
                acked[0] += levels.count("REPLICATED")
        except Exception as e:  # the stream's error is the result, not a crash
            errors.append(f"ack stream: {e}"[:300])

    thread = threading.Thread(target=read_acks, daemon=True)
    thread.start()
    started, sent = time.time(), 0
    try:
        while time.time() - started < a.seconds:
            writer.write_batch(batch)
            sent += 1
        writer.done_writing()
    except Exception as e:
        errors.append(f"write: {e}"[:300])
    thread.join(timeout=120)
    elapsed = time.time() - started

    term_after = status(leader)["term"]
    cpu = cpu_seconds(pids) - cpu_before if pids else None
    result = {
        "size": a.size,
        "seconds": round(elapsed, 1),
        "sent": sent,
        "acked": acked[0],
        "writes_per_s": round(acked[0] / elapsed),
        "mb_per_s": round(acked[0] * a.size / elapsed / 1e6, 1),
        "server_cpu_us_per_write": round(cpu * 1e6 / max(1, acked[0])) if pids else None,
        "term_changes": term_after - term_before,
        "errors": errors,
    }
    print(json.dumps(result))
    raise SystemExit(1 if errors else 0)


if __name__ == "__main__":
    main()
