from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.model import ModelCore
from vale._fastpath import SwitchCore
from vale.client import ClientError, call
from vale.switch import Switch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=[SwitchCore, ModelCore], ids=["cython", "model"])
def core_class(request):
    return request.param


@pytest.fixture
def make_switch(core_class):
    """Switches on a manual clock, on the Cython core and on the reference model."""
    def make(*ports: str, **settings) -> Switch:
        sw = Switch("vale0", manual_clock=True, core_class=core_class, **settings)
        for name in ports:
            sw.add_port(name)
        return sw
    return make


class Valed:
    def __init__(self, socket_path: str, proc: subprocess.Popen, log: Path) -> None:
        self.socket = socket_path
        self.proc = proc
        self.log = log

    def __call__(self, op: str, **args):
        return call(op, args, path=self.socket)

    def ctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "vale.cli.valectl", "--socket",
                                 self.socket, *argv], capture_output=True, text=True,
                                timeout=60, cwd=ROOT)
        if check and result.returncode != 0:
            raise AssertionError(f"valectl {' '.join(argv)}: {result.stderr.strip()}")
        return result

    def attach(self, *hosts, switch: str = "vale0", **settings) -> None:
        for host in hosts:
            self("attach", port=f"{switch}:{host.port}", settings=settings)

    def port_stats(self, host, switch: str = "vale0") -> dict:
        return self("stats", target=f"{switch}:{host.port}")[0]["ports"][host.port]


def start_valed(sock: str, log: Path, state_dir: Path | None = None,
                extra: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> Valed:
    """valed in the foreground on socket `sock`, logging to `log` (appending), keeping its
    state in `state_dir` (default: beside the log), ready to answer; wrap: a command it
    runs under (say `ip netns exec NS`)."""
    with log.open("a") as out:
        metrics = () if "--metrics" in extra else ("--no-metrics",)
        proc = subprocess.Popen([*wrap, sys.executable, "-m", "vale.daemon", "--foreground",
                                 "--socket", sock, "--state-dir", str(state_dir or log.parent),
                                 *metrics, *extra], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    daemon = Valed(sock, proc, log)
    deadline = time.monotonic() + 10
    while True:
        try:
            daemon("version")
            return daemon
        except ClientError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                proc.wait()
                raise AssertionError(f"valed did not start: {log.read_text()}") from None
            time.sleep(0.05)


def stop_valed(daemon: Valed) -> None:
    """SIGTERM, and it must exit 0 within 10 s."""
    proc = daemon.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("valed did not stop on SIGTERM") from None
    assert proc.returncode == 0, f"valed exited {proc.returncode}: {daemon.log.read_text()}"


@pytest.fixture
def valed(tmp_path):
    daemon = start_valed(str(tmp_path / "valed.sock"), tmp_path / "valed.log")
    yield daemon
    stop_valed(daemon)
