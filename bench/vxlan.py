"""L2 across two machines over the kernel's VXLAN: TCP between hosts on two "machines"
(network namespaces joined by a veth underlay, MTU 1550) through vale on each, against the
same TCP over the bare VXLAN devices (no switch: the machines' own addresses on them).

    .venv/bin/python bench/vxlan.py [--runs 5] [--seconds 4] [--json]

`vale`: each machine runs a valed with `create vx0 --vxlan` and a host on a veth; iperf3
from host A to host B. `bare`: a VXLAN device in each machine with an address, iperf3
from machine A to machine B. Turns alternate, order rotated; the ratio is the median of
the per-run ratios. Needs root and iperf3. Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import e2e

UNDERLAY = ("198.19.0.1", "198.19.0.2")
BARE = ("198.18.100.1", "198.18.100.2")
HOSTS = ("198.18.0.1", "198.18.0.2")


def iperf(lab: e2e.Lab, server_ns: str, client_ns: str, address: str, seconds: float) -> float:
    """Gbit/s of one TCP stream client -> server."""
    lab.start("iperf-s", e2e.in_ns(server_ns, "iperf3", "-s", "-1"))
    try:
        deadline = time.monotonic() + 10
        while "5201" not in e2e.sh(*e2e.in_ns(server_ns, "ss", "-Hltn")).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 -s did not listen")
            time.sleep(0.05)
        out = e2e.sh(*e2e.in_ns(client_ns, "iperf3", "-c", address, "-t", str(seconds), "-J"),
                     timeout=seconds + 30).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        lab.stop("iperf-s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    e2e.remove_leftovers()
    lab = e2e.Lab(Path(tempfile.mkdtemp(prefix=f"{e2e.PREFIX}-")))
    machines = [f"{e2e.PREFIX}h{k}1" for k in (1, 2)]
    hosts = [f"{e2e.PREFIX}h{k}2" for k in (1, 2)]
    results: dict[str, list[float]] = {"vale": [], "bare": []}
    try:
        with e2e.signals_as_interrupt():
            for ns in machines + hosts:
                e2e.make_ns(lab, ns)
            under = [f"{e2e.PREFIX}u{k}" for k in (1, 2)]
            e2e.sh("ip", "link", "add", under[0], "mtu", "1550", "netns", machines[0], "type",
                   "veth", "peer", "name", under[1], "mtu", "1550", "netns", machines[1])
            for k, ns in enumerate(machines):
                e2e.sh("ip", "-n", ns, "addr", "add", f"{UNDERLAY[k]}/24", "dev", under[k])
                e2e.sh("ip", "-n", ns, "link", "set", under[k], "up")
                # the bare path: a VXLAN device of the machine's own, with an address
                e2e.sh("ip", "-n", ns, "link", "add", "vxb", "type", "vxlan", "id", "200",
                       "remote", UNDERLAY[1 - k], "local", UNDERLAY[k], "dstport", "4790")
                e2e.sh("ip", "-n", ns, "addr", "add", f"{BARE[k]}/24", "dev", "vxb")
                e2e.sh("ip", "-n", ns, "link", "set", "vxb", "up")
                # the switched path: a host on a veth, valed with a VXLAN port
                port = f"{e2e.PREFIX}p{k + 1}"
                e2e.sh("ip", "link", "add", port, "netns", ns, "type", "veth", "peer", "name",
                       "eth0", "netns", hosts[k])
                e2e.sh("ip", "-n", ns, "link", "set", port, "up")
                e2e.sh("ip", "-n", hosts[k], "addr", "add", f"{HOSTS[k]}/24", "dev", "eth0")
                e2e.sh("ip", "-n", hosts[k], "link", "set", "eth0", "up")
                valed = e2e.Valed(lab, name=f"valed{k}", ns=ns)
                valed.call("attach", port=f"vale0:{port}")
                valed.call("create", name="vx0", kind="vxlan", vni=100,
                           remote=UNDERLAY[1 - k], local=UNDERLAY[k])
            for run in range(opts.runs):
                order = ("vale", "bare") if run % 2 == 0 else ("bare", "vale")
                for name in order:
                    if name == "vale":
                        gbps = iperf(lab, hosts[1], hosts[0], HOSTS[1], opts.seconds)
                    else:
                        gbps = iperf(lab, machines[1], machines[0], BARE[1], opts.seconds)
                    results[name].append(gbps)
                    e2e.log(f"run {run + 1} {name:5s} {gbps:6.2f} Gbit/s")
    except KeyboardInterrupt:
        e2e.log("interrupted: the runs so far")
    except RuntimeError as exc:
        e2e.log(f"failed: {exc}")
    finally:
        lab.teardown()
    pairs = [v / b for v, b in zip(results["vale"], results["bare"], strict=False) if b]
    out = {name: {"median_gbps": statistics.median(v), "runs": v}
           for name, v in results.items() if v}
    if pairs:
        out["ratio"] = {"vale/bare": statistics.median(pairs), "goal": 0.8,
                        "met": statistics.median(pairs) >= 0.8}
    print(json.dumps(out) if opts.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
