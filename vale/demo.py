"""The demo `make run` starts: valed with three hosts on vale0, traffic shown flowing.

Three network namespaces (198.18.0.1-3/24) on veth pairs whose root-side ends valed
attaches to vale0. It pings, runs a short iperf3, prints the MAC table and the counters,
then keeps everything up until Ctrl-C (or --duration), and removes all it made.
Needs root. Touches nothing but what it creates (names start with vd<pid>).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vale.client import ClientError, call

PREFIX = f"vd{os.getpid()}"
HOSTS = 3


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: {' '.join(cmd)}: {result.stderr.strip()}")
    return result


def ns_exec(i: int, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", f"{PREFIX}h{i}", *cmd, check=check)


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def make_hosts() -> None:
    for i in range(1, HOSTS + 1):
        ns, port = f"{PREFIX}h{i}", f"{PREFIX}p{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", port, "up")
        sh("ip", "-n", ns, "addr", "add", f"198.18.0.{i}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def remove_hosts() -> None:
    for i in range(1, HOSTS + 1):
        sh("ip", "netns", "del", f"{PREFIX}h{i}", check=False)
        sh("ip", "link", "del", f"{PREFIX}p{i}", check=False)


def valectl(sock: str, *argv: str) -> None:
    print(f"$ valectl {' '.join(argv)}", flush=True)
    subprocess.run([sys.executable, "-m", "vale.cli.valectl", "--socket", sock, *argv])


def iperf3_gbps(report: str) -> float | None:
    """The rate received in iperf3's JSON report; None when it has none. iperf 3.12 exits
    0 with -J even when it could not connect (the server not listening yet)."""
    try:
        return json.loads(report)["end"]["sum_received"]["bits_per_second"] / 1e9
    except (ValueError, KeyError, TypeError):
        return None


def show_traffic(sock: str) -> None:
    say("ping 198.18.0.1 -> 198.18.0.2 and 198.18.0.3")
    for target in (2, 3):
        out = ns_exec(1, "ping", "-c", "3", "-i", "0.2", "-q", f"198.18.0.{target}").stdout
        print(out.strip().splitlines()[-1])
    say("the switch learned where each host is")
    valectl(sock, "fdb", "vale0")
    if shutil.which("iperf3"):
        say("iperf3: one TCP stream 198.18.0.1 -> 198.18.0.2 for 3 seconds")
        server = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}h2", "iperf3", "-s", "-1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(50):
                run = ns_exec(1, "iperf3", "-c", "198.18.0.2", "-t", "3", "-J", check=False)
                gbps = iperf3_gbps(run.stdout)
                if gbps is not None:
                    print(f"{gbps:.2f} Gbit/s through vale0")
                    break
                time.sleep(0.1)
            else:
                print(f"iperf3 gave no result: {run.stdout.strip()[-500:]}{run.stderr}")
        finally:
            if server.poll() is None:
                server.kill()
            server.wait()
    say("counters (host 3 saw only the floods: known unicast went to host 2 alone, in the "
        "kernel: IN_KERNEL)")
    valectl(sock, "stats", "vale0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vale-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds instead of waiting for Ctrl-C")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("demo: needs root (network namespaces and packet sockets)")
    workdir = Path(tempfile.mkdtemp(prefix="vale-demo-"))
    sock = str(workdir / "valed.sock")
    daemon = None
    stop = False

    def interrupted(*_: object) -> None:
        nonlocal stop
        stop = True

    # Handled, not left to KeyboardInterrupt: a SIGINT ignored by whoever started us (as a
    # shell does for background jobs) must still end the demo and clean up.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        make_hosts()
        say(f"valed on {sock}")
        daemon = subprocess.Popen([sys.executable, "-m", "vale.daemon", "--foreground",
                                   "--socket", sock, "--state-dir", str(workdir)])
        for _ in range(100):
            try:
                call("version", path=sock)
                break
            except ClientError:
                time.sleep(0.05)
        for i in range(1, HOSTS + 1):
            valectl(sock, "attach", f"vale0:{PREFIX}p{i}")
        valectl(sock)
        show_traffic(sock)
        say("running; Ctrl-C removes everything" if args.duration is None
            else f"running for {args.duration:g} s more")
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        say("cleaning up")
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
        remove_hosts()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
