"""Test hosts in network namespaces, on veth pairs whose other end the switch attaches,
and a valed per test. Every name starts with this run's prefix; everything made is
removed afterwards, also when a test fails, and so are leftovers of earlier runs whose
process is gone. Addresses come from 198.18.0.0/15 only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PREFIX = f"vt{os.getpid()}"        # + h001 / p001 / t001: at most 13 bytes
_OURS = re.compile(r"^vt(\d+)[hpt]\d{3}$")


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, packet sockets)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "cannot use network namespaces here"
    return None


REASON = _why_not()
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in this directory is skipped, with the reason, where it cannot run (a
    `pytestmark` here would not do: pytest reads those from test modules only). The hook
    sees the whole session's items, so it picks out this directory's."""
    if REASON is None:
        return
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.skip(reason=REASON))


def sh(*cmd: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result


def finish(proc: subprocess.Popen, timeout: float) -> tuple:
    """proc.communicate(timeout), but a process that overstays is killed before the test
    fails, not left running."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(only_this_run: bool) -> None:
    """Namespaces and links this run made, and those of earlier runs that are gone."""
    def ours(name: str) -> bool:
        m = _OURS.match(name)
        if m is None:
            return False
        run = int(m.group(1))
        return run == os.getpid() or (not only_this_run and not process_alive(run))
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        if line.split() and ours(line.split()[0]):
            sh("ip", "netns", "del", line.split()[0], check=False)
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if ours(name):
            sh("ip", "link", "del", name, check=False)


@pytest.fixture(scope="session", autouse=True)
def _clean_session():
    if REASON is None:
        remove_leftovers(only_this_run=False)
    yield
    if REASON is None:
        remove_leftovers(only_this_run=True)


@dataclass
class Host:
    ns: str            # the namespace
    port: str          # the root-side veth end, which the switch attaches
    ip: str
    mac: str

    def run(self, *cmd: str, check: bool = True, timeout: float = 60):
        return sh("ip", "netns", "exec", self.ns, *cmd, check=check, timeout=timeout)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], **kw)

    def ping(self, other: Host, count: int = 3, size: int = 56, timeout: float = 2) -> bool:
        return self.run("ping", "-c", str(count), "-i", "0.05", "-W", str(timeout), "-s",
                        str(size), "-M", "do", "-q", other.ip, check=False).returncode == 0

    def raw(self, *args: str, timeout: float = 60):
        return self.run(sys.executable, "-m", "tests.integration.rawnet", *args,
                        timeout=timeout)

    def stat(self, name: str) -> int:
        return int(self.run("cat", f"/sys/class/net/eth0/statistics/{name}").stdout)


@pytest.fixture
def make_host():
    """make_host(i, mtu=1500) -> a host in a namespace of its own, 198.18.x.y/16."""
    made: list[Host] = []

    def make(i: int, mtu: int = 1500, ipv6: bool = True) -> Host:
        ns, port = f"{PREFIX}h{i:03d}", f"{PREFIX}p{i:03d}"
        sh("ip", "netns", "add", ns)
        made.append(Host(ns, port, "", ""))
        if not ipv6:        # no neighbour discovery chatter: frame counts stay exact
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw",
               "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "link", "add", port, "mtu", str(mtu), "type", "veth", "peer", "name", "eth0",
           "mtu", str(mtu), "netns", ns)
        sh("ip", "link", "set", port, "up")
        ip = f"198.18.{i // 250}.{i % 250 + 1}"
        for cmd in (("addr", "add", f"{ip}/16", "dev", "eth0"), ("link", "set", "eth0", "up"),
                    ("link", "set", "lo", "up")):
            sh("ip", "-n", ns, *cmd)
        mac = sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/address").stdout.strip()
        made[-1] = Host(ns, port, ip, mac)
        return made[-1]

    yield make
    for host in made:
        sh("ip", "netns", "del", host.ns, check=False)
        sh("ip", "link", "del", host.port, check=False)


PAGES_EACH = 128                # 256 MiB of 2 MiB pages per testpmd (its -m 256)
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")


@pytest.fixture
def huge_pages() -> Iterator[str]:
    """A hugetlbfs mount of this test's own with pages for two testpmds; the pages are
    given back afterwards."""
    before = int(NR_HUGEPAGES.read_text())
    NR_HUGEPAGES.write_text(str(before + 2 * PAGES_EACH))
    mount = tempfile.mkdtemp(prefix=f"{PREFIX}huge")
    try:
        free = int(re.search(r"HugePages_Free:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        if free < 2 * PAGES_EACH:
            pytest.skip(f"only {free} huge pages could be reserved")
        sh("mount", "-t", "hugetlbfs", "nodev", mount)
        try:
            yield mount
        finally:
            sh("umount", mount, check=False)
    finally:
        os.rmdir(mount)
        NR_HUGEPAGES.write_text(str(before))
