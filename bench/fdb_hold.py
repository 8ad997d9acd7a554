"""How long the MAC table's resize and full read hold the forwarding lock at a time.

    .venv/bin/python bench/fdb_hold.py [--entries N] [--runs R]

While the lock is held, no frame is forwarded, so the longest hold is the longest stall a
resize or a `valectl fdb` listing can cause. A table of N learned entries (spread over 8
ports) is grown to twice its capacity, shrunk to three quarters (evicting a quarter of
it) and read whole, R times. Each hold is timed by the `between` hook that set_capacity and
fdb_entries call before each hold of the lock and after the last, with no lock held: from
one call to the next is one hold (with the hook's own few microseconds). Prints the median
and the longest hold of each, in milliseconds, and how long the whole took.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vale._fastpath import SwitchCore

PORTS = 8


def filled(entries: int) -> SwitchCore:
    core = SwitchCore(capacity=entries, manual_clock=True)
    ports = [core.add_port(rx_slots=1024, tx_slots=1024, slot_size=128) for _ in range(PORTS)]
    for start in range(0, entries, 1024):
        for n, port in enumerate(ports):
            frames = [bytes.fromhex("ffffffffffff") +
                      (0x020000000000 + i).to_bytes(6, "big") + bytes(48)
                      for i in range(start, min(start + 1024, entries)) if i % PORTS == n]
            core.inject(port, frames)
            core.forward(port)
            for other in ports:
                core.drain(other)
    assert core.snapshot()["fdb"]["entries"] == entries
    return core


def holds(run) -> tuple[list[float], float]:
    """The holds of the lock by run(between=...), and how long run took, in ms."""
    stamps: list[float] = []
    run(between=lambda: stamps.append(time.perf_counter()))
    each = [(b - a) * 1000 for a, b in pairwise(stamps)]
    return each, (stamps[-1] - stamps[0]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=262144)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float, float]]] = {"grow": [], "shrink": [], "read": []}
    for _ in range(args.runs):
        core = filled(args.entries)
        steps = {"grow": partial(core.set_capacity, 2 * args.entries),
                 "shrink": partial(core.set_capacity, args.entries * 3 // 4),
                 "read": core.fdb_entries}
        for name, run in steps.items():
            each, whole = holds(run)
            rows[name].append((statistics.median(each), max(each), whole))
    print(f"{args.entries} entries, {args.runs} runs (medians of the runs), ms")
    print(f"{'':8} {'median hold':>12} {'longest hold':>13} {'whole':>9}")
    for name, runs in rows.items():
        med, longest, whole = (statistics.median(col) for col in zip(*runs, strict=True))
        print(f"{name:8} {med:12.3f} {longest:13.3f} {whole:9.1f}")


if __name__ == "__main__":
    main()
