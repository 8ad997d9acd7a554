"""Scale: 1,024 ports on one switch, and 64 switches of 16 ports, in one valed.

    .venv/bin/python bench/scale.py [--layout one|many] [--ports 1024] [--hosts 32]
                                    [--switches 64x16] [--idle-frames 15] [--json]
                                    [--macs 1000000 [--plot FILE]] [--profile FILE]
    .venv/bin/python bench/scale.py --replot RUN.json --plot FILE

In a namespace of the run's own: `--ports` veth pairs, of which `--hosts` lead to hosts
in namespaces of their own (198.18.0.x) and the rest have both ends in the switch's
namespace, up and quiet. valed attaches them all to vale0 in requests of 128
(`valectl attach` with several ports; `rx_frames_idle` as given, so an idle port's
receive ring is one 1 MiB block). It reports the time the attach took, valed's resident
memory (VmRSS) once they are attached, and whether every sampled host pings the next
through the switch. `--layout many` attaches the first ports as `--switches` (count x
ports) instead. Both then measure valed's CPU time over 20 idle seconds.

`--macs N` (layout one) then fills vale0's MAC table: a program on a memif port sends
frames from N source MACs (to its own MAC, so nothing floods), and measures with the
table full: a Prometheus scrape, `valectl list`, `stats` and `fdb` (streamed, its lines
counted), each while two hosts ping every 10 ms through the switch (the longest reply
says whether forwarding stalled), and TCP (iperf3) between two hosts on vale0 against two
hosts on vale1, a switch of two ports in the same valed, runs alternating. Needs root.
Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import e2e

from cli.pkttools import udp_frame
from vale.app import open_port

CHUNK = 128                     # ports per attach request
IDLE_S = 20
METRICS = "127.0.0.1:9617"      # valed's metrics, in the switch namespace (--macs)
TCP_RUNS, TCP_S = 3, 5


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def stat_seconds(stat: Path) -> float:
    """utime + stime of a /proc stat file (a process's or a thread's), in seconds."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100     # in clock ticks


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far by thread name (the forwarding threads share theirs)."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            used = stat_seconds(task / "stat")
        except OSError:                 # a thread that ended meanwhile
            continue
        seconds[name] = seconds.get(name, 0) + used
    return seconds


def make_quiet_veths(lab: e2e.Lab, count: int, first: int) -> list[str]:
    """count veth pairs with both ends in the switch namespace; the names vale attaches."""
    names = [f"{e2e.PREFIX}x{k:04d}" for k in range(first, first + count)]
    batch = lab.tmp / "veths.batch"
    batch.write_text("".join(
        f"link add {n} type veth peer name {e2e.PREFIX}y{n[-4:]}\nlink set {n} up\n"
        f"link set {e2e.PREFIX}y{n[-4:]} up\n" for n in names))
    e2e.sh("ip", "-n", e2e.SWITCH_NS, "-batch", str(batch), timeout=600)
    return names


def attach(valed: e2e.Valed, switch: str, ports: list[str], idle_frames: int) -> None:
    settings: dict[str, Any] = {"rx_frames_idle": idle_frames} if idle_frames else {}
    settings.update(json.loads(os.environ.get("VALE_SCALE_SETTINGS", "{}")))
    for k in range(0, len(ports), CHUNK):
        valed.call("attach", ports=[f"{switch}:{p}" for p in ports[k:k + CHUNK]],
                   settings=settings)


def fill_table(lab: e2e.Lab, valed: e2e.Valed, macs: int) -> float:
    """vale0:app1, a memif port, and frames from `macs` source MACs through it until the
    table holds them all; seconds it took."""
    sock = str(lab.tmp / "app1.sock")
    valed.call("create", name="app1", kind="memif", path=sock)
    own = "02:ff:00:00:00:01"
    start = time.monotonic()
    with open_port(sock) as port:
        port.send([udp_frame(60, src=own, dst="02:ff:00:00:00:02")])
        base = udp_frame(60, src=own, dst=own)      # learned on app1: dropped there
        for first in range(0, macs, 4096):
            frames = []
            for k in range(first, min(first + 4096, macs)):
                f = bytearray(base)
                f[6:12] = (0x02AA << 32 | k).to_bytes(6, "big")
                frames.append(bytes(f))
            sent = 0
            while sent < len(frames):
                sent += port.send(frames[sent:])
        deadline = time.monotonic() + 300
        while valed.call("stats", target="vale0")[0]["fdb"]["entries"] < macs:
            if time.monotonic() > deadline:
                raise RuntimeError("the table did not fill")
            time.sleep(0.5)
    return time.monotonic() - start


def while_pinging(a: e2e.Host, b: e2e.Host, step: Any) -> tuple[float, Any, float, int]:
    """(seconds step() took, what it returned, the longest ping reply meanwhile in ms,
    pings lost): a pings b every 10 ms all along."""
    ping = subprocess.Popen(e2e.in_ns(a.ns, "ping", "-i", "0.01", "-W", "1", b.ip),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.3)
        start = time.monotonic()
        result = step()
        took = time.monotonic() - start
        time.sleep(0.3)
    finally:
        ping.send_signal(signal.SIGINT)
        out, _ = ping.communicate(timeout=10)
    rtts = [float(m) for m in re.findall(r"time=([\d.]+)", out)]
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    lost = int(sent.group(1)) - int(sent.group(2)) if sent else -1
    return took, result, max(rtts, default=float("nan")), lost


def scrape() -> int:
    """Bytes of one scrape of valed's metrics (from the switch namespace)."""
    code = ("import sys, urllib.request; "
            f"sys.stdout.write(str(len(urllib.request.urlopen('http://{METRICS}/metrics', "
            "timeout=60).read())))")
    return int(e2e.sh(*e2e.in_ns(e2e.SWITCH_NS, sys.executable, "-c", code), timeout=90).stdout)


def valectl(valed: e2e.Valed, *argv: str) -> str:
    return e2e.sh(sys.executable, "-m", "cli.valectl", "--socket", valed.sock, *argv,
                  timeout=600).stdout


def at_scale(lab: e2e.Lab, valed: e2e.Valed, hosts: list[e2e.Host], macs: int,
             out: dict[str, Any]) -> None:
    """The --macs measurements (see the module's doc)."""
    valed.call("set", target="vale0", settings={"fdb_capacity": macs + 65536})
    out["fill_s"] = fill_table(lab, valed, macs)
    out["fdb_entries"] = valed.call("stats", target="vale0")[0]["fdb"]["entries"]
    a, b = hosts[0], hosts[1]
    for name, step in (("scrape", scrape),
                       ("list", lambda: len(valectl(valed, "list").splitlines())),
                       ("stats", lambda: len(valectl(valed, "stats", "vale0").splitlines())),
                       ("fdb", lambda: valectl(valed, "fdb", "vale0").count("\n") - 1)):
        took, result, worst, lost = while_pinging(a, b, step)
        out[name] = {"s": round(took, 3), "result": result, "ping_max_ms": worst,
                     "pings_lost": lost}
        e2e.log(f"{name}: {out[name]}")
    pair = [e2e.make_host(lab, i) for i in (91, 92)]
    valed.call("attach", ports=[f"vale1:{h.port}" for h in pair])
    tcp: dict[str, list[float]] = {"vale0": [], "vale1": []}
    for run in range(TCP_RUNS):
        order = ("vale0", "vale1") if run % 2 == 0 else ("vale1", "vale0")
        for name in order:
            x, y = (a, b) if name == "vale0" else pair
            tcp[name].append(e2e.measure_tcp(x, y, TCP_S))
            e2e.log(f"tcp {name} run {run + 1}: {tcp[name][-1]:.2f} Gbit/s")
    out["tcp_gbps"] = tcp
    out["tcp_ratio"] = statistics.median(
        big / small for big, small in zip(tcp["vale0"], tcp["vale1"], strict=True))


def plot(out: dict[str, Any], path: str) -> None:
    """A --macs run: what each request took with the table full (and the longest ping
    reply meanwhile), and TCP on the full switch against the two-port one, by run."""
    plt = e2e.import_pyplot()
    fig, (ops, tcp) = plt.subplots(1, 2, figsize=(9, 3.2))
    names = [n for n in ("scrape", "list", "stats", "fdb") if n in out]
    bars = ops.bar(names, [out[n]["s"] for n in names], color="#1f77b4")
    for bar, n in zip(bars, names, strict=True):
        ops.annotate(f"{out[n]['s']:.2f} s\nping\n<= {out[n]['ping_max_ms']:.2f} ms",
                     (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                     ha="center", va="bottom", fontsize=7)
    ops.set_ylabel("seconds (the longest ping reply meanwhile)")
    ops.set_title(f"{out['ports']} ports, {out.get('fdb_entries', 0):,} MACs on vale0")
    ops.margins(y=0.3)
    runs = range(1, len(out["tcp_gbps"]["vale0"]) + 1)
    for name, colour in (("vale0", "#1f77b4"), ("vale1", "#7f7f7f")):
        tcp.plot(runs, out["tcp_gbps"][name], "o-", color=colour, label={
            "vale0": "vale0 (full)", "vale1": "vale1 (2 ports)"}[name])
    tcp.set_xticks(list(runs))
    tcp.set_xlabel("run")
    tcp.set_ylabel("TCP Gbit/s (iperf3)")
    tcp.set_ylim(bottom=0)
    tcp.set_title(f"median ratio {out['tcp_ratio']:.2f}")
    tcp.legend(loc="lower right")
    fig.text(0.01, 0.01, "bench/scale.py --macs 1000000", fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=1024)
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--switches", default="64x16")
    parser.add_argument("--idle-frames", type=int, default=15)
    parser.add_argument("--layout", choices=("one", "many"), default="one",
                        help="one: every port on vale0; many: --switches switches")
    parser.add_argument("--switch-settings", default="",
                        help='settings for every switch before the idle time, as JSON')
    parser.add_argument("--macs", type=int, default=0,
                        help="fill vale0's MAC table with this many and measure (layout one)")
    parser.add_argument("--plot", metavar="FILE",
                        help="draw a --macs run into FILE (.svg; needs matplotlib)")
    parser.add_argument("--replot", metavar="JSON",
                        help="draw an earlier --macs run's --json output (with --plot)")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy's samples of the attach (FILE.attach) and the idle time, raw")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    if opts.replot:
        plot(json.loads(Path(opts.replot).read_text()), opts.plot or "scale.svg")
        return 0
    n_switches, per_switch = (int(x) for x in opts.switches.split("x"))
    e2e.remove_leftovers()
    lab = e2e.Lab(Path(tempfile.mkdtemp(prefix=f"{e2e.PREFIX}-")))
    out: dict[str, Any] = {"ports": opts.ports, "idle_frames": opts.idle_frames}
    try:
        with e2e.signals_as_interrupt():
            e2e.make_switch_ns(lab)
            hosts = [e2e.make_host(lab, i) for i in range(1, opts.hosts + 1)]
            # --macs: the last of the ports is the memif port that fills the table
            quiet = make_quiet_veths(lab, opts.ports - len(hosts) - bool(opts.macs), 0)
            ports = [h.port for h in hosts] + quiet
            extra = ("--max-switches", str(max(n_switches, 2)))
            if opts.macs:
                extra += ("--max-fdb-capacity", str(opts.macs + 65536))
            valed = e2e.Valed(lab, extra=extra, metrics=METRICS if opts.macs else None)
            pid = valed.proc.pid
            out["rss_before_mib"] = status_kib(pid, "VmRSS") / 1024
            spy = str(Path(sys.executable).parent / "py-spy")
            if opts.profile:                # the attach too, until it is over (SIGINT)
                lab.start("spy-attach", [spy, "record", "--pid", str(pid), "--nonblocking",
                                         "--format", "raw", "--output",
                                         opts.profile + ".attach"])
            if opts.layout == "one":
                start = time.monotonic()
                attach(valed, "vale0", ports, opts.idle_frames)
                out["attach_s"] = time.monotonic() - start
                time.sleep(2)
                out["rss_mib"] = status_kib(pid, "VmRSS") / 1024
                failed = [f"{a.ip}->{b.ip}" for a, b in zip(hosts, hosts[1:] + hosts[:1],
                                                            strict=True)
                          if e2e.sh(*e2e.in_ns(a.ns, "ping", "-c", "2", "-i", "0.2", "-W",
                                               "2", b.ip), check=False).returncode != 0]
                out["pings"] = len(hosts)
                out["pings_failed"] = failed
                if opts.macs:
                    at_scale(lab, valed, hosts, opts.macs, out)
            else:
                sample = ports[:n_switches * per_switch]
                start = time.monotonic()
                for k in range(n_switches):
                    attach(valed, f"vale{k}", sample[k * per_switch:(k + 1) * per_switch],
                           opts.idle_frames)
                out["switches"] = f"{n_switches}x{per_switch}"
                out["attach_s"] = time.monotonic() - start
            if opts.profile:
                lab.daemons["spy-attach"].send_signal(signal.SIGINT)
                lab.daemons["spy-attach"].wait(60)
            for row in {row["switch"] for row in valed.call("list")}:
                if opts.switch_settings:
                    valed.call("set", target=row, settings=json.loads(opts.switch_settings))
            time.sleep(3)
            proc_stat = Path(f"/proc/{pid}/stat")
            before, threads_before = stat_seconds(proc_stat), thread_cpu(pid)
            if opts.profile:
                e2e.sh(spy, "record", "--pid", str(pid), "--duration", str(IDLE_S),
                       "--nonblocking", "--format", "raw", "--output", opts.profile,
                       timeout=IDLE_S + 60)
            else:
                time.sleep(IDLE_S)
            out["idle_cpu_percent"] = 100 * (stat_seconds(proc_stat) - before) / IDLE_S
            out["idle_cpu_percent_by_thread"] = {
                name: round(100 * (s - threads_before.get(name, 0)) / IDLE_S, 2)
                for name, s in thread_cpu(pid).items() if s > threads_before.get(name, 0)}
            out["idle_rss_mib"] = status_kib(pid, "VmRSS") / 1024
    except KeyboardInterrupt:
        e2e.log("interrupted")
    finally:
        lab.teardown()
    print(json.dumps(out) if opts.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    if opts.plot and "tcp_gbps" in out:
        plot(out, opts.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
