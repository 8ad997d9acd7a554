"""Scale: 1,024 ports on one switch, and 64 switches of 16 ports, in one valed.

    .venv/bin/python bench/scale.py [--layout one|many] [--ports 1024] [--hosts 32]
                                    [--switches 64x16] [--idle-frames 15] [--json]

In a namespace of the run's own: `--ports` veth pairs, of which `--hosts` lead to hosts
in namespaces of their own (198.18.0.x) and the rest have both ends in the switch's
namespace, up and quiet. valed attaches them all to vale0 in requests of 128
(`valectl attach` with several ports; `rx_frames_idle` as given, so an idle port's
receive ring is one 1 MiB block). It reports the time the attach took, valed's resident
memory (VmRSS) once they are attached, and whether every sampled host pings the next
through the switch. `--layout many` attaches the first ports as `--switches` (count x
ports) instead. Both then measure valed's CPU time over 20 idle seconds. Needs root.
Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import e2e

CHUNK = 128                     # ports per attach request
IDLE_S = 20


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100     # utime + stime, in clock ticks


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far by thread name (the forwarding threads share theirs)."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:                 # a thread that ended meanwhile
            continue
        seconds[name] = seconds.get(name, 0) + (int(fields[11]) + int(fields[12])) / 100
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
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy's samples of the attach (FILE.attach) and the idle time, raw")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    n_switches, per_switch = (int(x) for x in opts.switches.split("x"))
    e2e.remove_leftovers()
    lab = e2e.Lab(Path(tempfile.mkdtemp(prefix=f"{e2e.PREFIX}-")))
    out: dict[str, Any] = {"ports": opts.ports, "idle_frames": opts.idle_frames}
    try:
        with e2e.signals_as_interrupt():
            e2e.make_switch_ns(lab)
            hosts = [e2e.make_host(lab, i) for i in range(1, opts.hosts + 1)]
            quiet = make_quiet_veths(lab, opts.ports - len(hosts), 0)
            ports = [h.port for h in hosts] + quiet
            valed = e2e.Valed(lab, extra=("--max-switches", str(max(n_switches, 1))))
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
            before, threads_before = cpu_seconds(pid), thread_cpu(pid)
            if opts.profile:
                e2e.sh(spy, "record", "--pid", str(pid), "--duration", str(IDLE_S),
                       "--nonblocking", "--format", "raw", "--output", opts.profile,
                       timeout=IDLE_S + 60)
            else:
                time.sleep(IDLE_S)
            out["idle_cpu_percent"] = 100 * (cpu_seconds(pid) - before) / IDLE_S
            out["idle_cpu_percent_by_thread"] = {
                name: round(100 * (s - threads_before.get(name, 0)) / IDLE_S, 2)
                for name, s in thread_cpu(pid).items() if s > threads_before.get(name, 0)}
            out["idle_rss_mib"] = status_kib(pid, "VmRSS") / 1024
    except KeyboardInterrupt:
        e2e.log("interrupted")
    finally:
        lab.teardown()
    print(json.dumps(out) if opts.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
