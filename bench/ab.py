"""A/B of vale's settings on TCP, 64-byte UDP frames and the round trip, against the bare
switches, between the same two hosts as bench/e2e.py (whose lab, hosts and switches it uses).

    .venv/bin/python bench/ab.py ROUNDS VARIANT [VARIANT ...]

A VARIANT is NAME=KEY:VALUE,KEY:VALUE (vale0 with those settings; NAME= alone for the
defaults), NAME@TREE=... (the same, from a valed run out of another built tree, e.g. a
`git worktree` of an older commit: two versions side by side) or the name of a bare
switch (bare, bare-pinned, bare-mmsg; pinned to the last CPU).
Each round gives every variant one turn, the order rotated from round to round; per
turn one iperf3 TCP stream for 4 s, trafgen's 64-byte UDP frames for 2 s (delivered per
second) and 100 pings 5 ms apart. A round where a turn failed is said and left out. It
prints each round, then per variant the medians and the median of its per-round ratios to
the first variant.
Needs root; everything it makes is removed at the end, as bench/e2e.py does.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import e2e

TCP_S = 4
PPS_S = 2.0
PINGS = 100


def paired(mine: list[float], base: list[float]) -> float:
    """The median of the per-round ratios."""
    return statistics.median(x / y for x, y in zip(mine, base, strict=True))


def switches(lab: e2e.Lab, variants: list[str]) -> list[e2e.Switch]:
    pin = e2e.ThreadCpu()
    pin.fallback("bench/ab.py pins the bare switches so")
    bares = {b.name: b for b in e2e.build_bare(lab, False, pin)[0]}
    daemons: dict[str, e2e.Valed] = {}     # by tree: one valed each
    chosen: list[e2e.Switch] = []
    for variant in variants:
        if variant in bares:
            chosen.append(bares[variant])
            continue
        name, sep, settings = variant.partition("=")
        if not sep:
            raise SystemExit(f"ab: {variant!r} is neither NAME=KEY:VALUE,... nor a bare switch")
        name, _, tree = name.partition("@")
        if tree not in daemons:
            daemons[tree] = e2e.Valed(lab, Path(tree).resolve() if tree else e2e.ROOT,
                                      f"valed{len(daemons)}")
        chosen.append(e2e.Vale(daemons[tree], name, dict(kv.split(":", 1) for kv in
                                                         settings.split(",") if kv)))
    return chosen


def main() -> int:
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    rounds, variants = int(sys.argv[1]), sys.argv[2:]
    e2e.remove_leftovers()
    lab = e2e.Lab(Path(tempfile.mkdtemp(prefix=f"{e2e.PREFIX}-")))
    tcp: dict[str, list[float]] = {}
    pps: dict[str, list[float]] = {}
    rtt: dict[str, list[float]] = {}
    try:
        with e2e.signals_as_interrupt():
            e2e.make_switch_ns(lab)
            a, b = e2e.make_host(lab, 1), e2e.make_host(lab, 2)
            tried = switches(lab, variants)
            for results in (tcp, pps, rtt):
                results.update((s.name, []) for s in tried)
            for r in range(rounds):
                measured = {}
                for switch in tried[r % len(tried):] + tried[:r % len(tried)]:
                    try:
                        switch.wire([a, b])
                        try:
                            e2e.wait_reachable(a, b)
                            measured[switch.name] = (
                                e2e.measure_tcp(a, b, TCP_S),
                                e2e.measure_pps(lab, a, b, PPS_S, "udp")[1],
                                e2e.measure_rtt(a, b, PINGS))
                        finally:
                            switch.unwire()
                    except Exception as exc:    # this round is left out of the pairing
                        print(f"ab: round {r + 1}: {switch.name} failed: {e2e.failure(exc)}",
                              file=sys.stderr)
                if len(measured) == len(tried):
                    for name, (gbps, fps, ms) in measured.items():
                        tcp[name].append(gbps)
                        pps[name].append(fps)
                        rtt[name].append(ms)
                print(f"round {r + 1}: " + ", ".join(
                    f"{n} {g:.2f} Gbit/s {f / 1000:.0f} kfps {ms:.3f} ms"
                    for n, (g, f, ms) in measured.items()), flush=True)
    except KeyboardInterrupt:
        print("ab: interrupted; the rounds that completed:", file=sys.stderr)
    finally:
        lab.teardown()
    base = next(iter(tcp), "")
    for name in tcp:                        # complete rounds only: the lists pair up
        if not tcp[name]:
            continue
        print(f"{name:14} TCP {statistics.median(tcp[name]):6.2f} Gbit/s "
              f"x{paired(tcp[name], tcp[base]):.3f}, frames "
              f"{statistics.median(pps[name]) / 1000:.0f} kfps "
              f"x{paired(pps[name], pps[base]):.3f}, round trip "
              f"{statistics.median(rtt[name]):.3f} ms (x: paired to {base})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
