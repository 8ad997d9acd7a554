"""The kernel fast path without a network: the BPF object as built (its sections, maps
and programs, read from the ELF file), the names the loader and fastpath.h share, and,
as root, the tc program's decisions on frames given to it by a test run (no frame is
sent anywhere). With namespaces and real traffic: tests/integration/test_bpf_fastpath.py."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sysconfig
from pathlib import Path

import pytest

from vale import _fastpath
from vale.bpf import OBJECT
from vale.names import mac_to_key

_bpf = pytest.importorskip("vale._bpf", reason="built without the fast path (VALE_BPF=0)")

HEADER = Path(_bpf.__file__).parent / "bpf" / "fastpath.h"


def elf_sections_and_symbols(path: Path) -> tuple[list[str], dict[str, str]]:
    """The section names of an ELF64 little-endian file, and its symbols' sections (the
    little of ELF this test needs, so it needs nothing installed)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not ELF64 LE"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
               for i in range(shnum)]

    def string(table: int, offset: int) -> str:
        start = headers[table][4] + offset
        return data[start:data.index(b"\0", start)].decode()

    names = [string(shstrndx, h[0]) for h in headers]
    symbols = {}
    for h in headers:
        if h[1] == 2:                   # SHT_SYMTAB; its sh_link is its string table
            for k in range(h[5] // 24):
                st_name, _info, _other, st_shndx = struct.unpack_from(
                    "<IBBH", data, h[4] + k * 24)
                if st_name and 0 < st_shndx < len(names):
                    symbols[string(h[6], st_name)] = names[st_shndx]
    return names, symbols


def test_object_has_the_programs_and_maps():
    assert OBJECT.exists(), f"{OBJECT} not built (setup.py build_ext)"
    assert Path(_bpf.OBJECT) == OBJECT
    sections, symbols = elf_sections_and_symbols(OBJECT)
    for section in ("tc", ".maps", "license", ".BTF"):
        assert section in sections
    assert symbols["vale_tc"] == "tc"
    assert symbols["vale_upcall"] == "tc"
    for name in _bpf.MAPS:
        assert symbols[name] == ".maps"


def test_names_match_the_header():
    """The counters' names in the loader follow fastpath.h's enums, in order."""
    text = HEADER.read_text()
    drops = re.findall(r"^\s*VALE_BPF_DROP_([A-Z_]+),", text, re.M)
    passes = re.findall(r"^\s*VALE_BPF_PASS_([A-Z_]+),", text, re.M)
    assert tuple(n.lower() for n in drops) == _bpf.DROP_REASONS
    assert tuple(n.lower() for n in passes) == _bpf.PASS_REASONS
    assert _bpf.MAX_PORTS == _fastpath.MAX_PORTS
    assert _bpf.DEFAULT_MACS == 65536


def test_bad_arguments_are_refused_before_anything_loads(tmp_path):
    with pytest.raises(ValueError):
        _bpf.Datapath(str(tmp_path), macs=0)
    with pytest.raises(OSError, match="no BPF object"):
        _bpf.Datapath(str(tmp_path), object_path=str(tmp_path / "missing.o"))
    if os.geteuid() == 0:
        # A directory that is not on bpffs cannot hold pins.
        with pytest.raises(OSError, match="not on a bpf filesystem"):
            _bpf.Datapath(str(tmp_path))


# ---- as root: the decisions, by test runs of the tc program ---------------------------

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
LO = 1                                  # the loopback interface: a test run's default
OTHER = 1_000_000                       # an ifindex no interface has: never redirected to


def frame(dst: str, src: str, length: int = 60, ethertype: int = 0x0800) -> bytes:
    head = bytes.fromhex(dst.replace(":", "") + src.replace(":", ""))
    return head + struct.pack("!H", ethertype) + bytes(length - 14)


def tcp_frame(dst: str, src: str, length: int, ipv6: bool = False) -> bytes:
    """A frame with plain IPv4 or IPv6 and TCP headers (20 bytes), then zeros."""
    if ipv6:
        l3 = struct.pack("!IHBB", 6 << 28, length - 54, 6, 64) + bytes(32)
    else:
        l3 = bytes([0x45, 0]) + struct.pack("!H", length - 14) + bytes(5) + b"\x06" + bytes(10)
    tcp = bytes(12) + b"\x50" + bytes(7)
    head = frame(dst, src, 14, 0x86DD if ipv6 else 0x0800)
    return head + l3 + tcp + bytes(length - len(head) - len(l3) - len(tcp))


@pytest.fixture
def datapath():
    if os.geteuid() != 0:
        pytest.skip("needs root (loading BPF programs, bpffs)")
    pins = _bpf.pin_dir(f"vbpf{os.getpid()}u")
    shutil.rmtree(pins, ignore_errors=True)
    d = _bpf.Datapath(pins)
    try:
        # Port 3 is the loopback interface, where test frames arrive; port 4 one that
        # frames are redirected to.
        d.set_port(LO, 3)
        d.set_port(OTHER, 4)
        d.set_src(mac_to_key(A), 3)
        d.set_src(mac_to_key(B), 4)
        d.set_dst(mac_to_key(A), 3, LO, 1500)
        d.set_dst(mac_to_key(B), 4, OTHER, 1500)
        yield d
    finally:
        d.close()
        shutil.rmtree(pins, ignore_errors=True)


def test_known_unicast_is_redirected_and_counted(datapath):
    assert datapath.run_tc(frame(B, A, 100)) == "redirect"
    assert datapath.port_stats(3) == {"rx_packets": 1, "rx_bytes": 100, "tx_packets": 0,
                                      "tx_bytes": 0, "drops": {"own_port": 0, "mtu": 0}}
    assert datapath.port_stats(4)["tx_packets"] == 1
    assert datapath.port_stats(4)["tx_bytes"] == 100
    assert set(datapath.stats()) == {3, 4}
    assert not any(datapath.passed().values())
    datapath.clear_stats(3)
    assert datapath.port_stats(3)["rx_packets"] == 0


@pytest.mark.parametrize("case, reason", [
    ("broadcast", "group"), ("multicast", "group"), ("tagged", "vlan"),
    ("qinq", "vlan"), ("unknown source", "src_unknown"), ("moved source", "src_moved"),
    ("unknown destination", "dst_unknown"), ("port off", "port"),
    ("destination port off", "dst_port"), ("destination port stale", "dst_port"),
    ("destination port gone", "dst_port"),
])
def test_what_goes_up(datapath, case, reason):
    """Every frame vale must see itself passes, counted by why, and nothing else moves."""
    f = frame(B, A)
    if case == "broadcast":
        f = frame("ff:ff:ff:ff:ff:ff", A)
    elif case == "multicast":
        f = frame("01:00:5e:00:00:01", A)
    elif case == "tagged":
        f = frame(B, A, ethertype=0x8100)
    elif case == "qinq":
        f = frame(B, A, ethertype=0x88A8)
    elif case == "unknown source":
        f = frame(B, C)
    elif case == "moved source":
        datapath.set_src(mac_to_key(A), 4)
    elif case == "unknown destination":
        f = frame(C, A)
    elif case == "port off":
        datapath.set_port(LO, 3, flags=_bpf.PORT_TX)
    elif case == "destination port off":
        datapath.set_port(OTHER, 4, flags=_bpf.PORT_RX)
    elif case == "destination port stale":
        datapath.set_port(OTHER, 5)
    elif case == "destination port gone":
        assert datapath.delete_port(OTHER) and not datapath.delete_port(OTHER)
    assert datapath.run_tc(f) == "pass"
    assert datapath.passed()[reason] == 1
    assert sum(datapath.passed().values()) == 1


@pytest.mark.parametrize("dst, verdict", [
    (C, "redirect"),                    # unknown unicast: moved into the upcall device
    ("ff:ff:ff:ff:ff:ff", "pass"),      # broadcast: a copy goes up, the frame on
    ("00:00:00:00:00:00", "pass"),      # to the interface's own MAC (lo's): the same
])
def test_what_goes_up_goes_to_the_upcall_device(datapath, dst, verdict):
    """With an upcall device, a frame for vale is redirected into it, unless the
    interface's own stack may want it too (then a copy goes there, which a test run
    cannot show: its device does not exist)."""
    datapath.set_port(LO, 3, upcall=OTHER + 1)
    assert datapath.port(LO) == (3, _bpf.PORT_RX | _bpf.PORT_TX, OTHER + 1)
    assert datapath.run_tc(frame(dst, A)) == verdict
    assert sum(datapath.passed().values()) == 1
    assert datapath.stats() == {}


def test_own_port_and_mtu_drops(datapath):
    datapath.set_dst(mac_to_key(B), 3, LO, 1500)
    assert datapath.run_tc(frame(B, A)) == "drop"
    assert datapath.port_stats(3)["drops"]["own_port"] == 1
    # MTU + 18 (an Ethernet header and a VLAN tag) goes, a byte more is dropped and
    # counted on the destination, as vale and the bridge do.
    datapath.set_dst(mac_to_key(B), 4, OTHER, 1000)
    assert datapath.run_tc(frame(B, A, 1018)) == "redirect"
    assert datapath.run_tc(frame(B, A, 1019)) == "drop"
    assert datapath.port_stats(4)["drops"]["mtu"] == 1
    assert datapath.port_stats(4)["tx_packets"] == 1
    assert datapath.port_stats(3)["rx_packets"] == 3


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_gso_frames_by_their_segments(datapath, ipv6):
    """A GSO frame passes the MTU check when its segments fit (headers and gso_size),
    whatever its own length, and counts as its segments."""
    headers = 14 + (40 if ipv6 else 20) + 20
    f = tcp_frame(B, A, 3000, ipv6)         # a test run takes at most about a page
    fits = 1518 - headers
    assert datapath.run_tc(f, gso_size=fits, gso_segs=2) == "redirect"
    assert datapath.port_stats(3)["rx_packets"] == 2
    assert datapath.port_stats(4)["tx_bytes"] == 3000
    # gso_segs left for later (an untrusted sender): counted from the lengths.
    assert datapath.run_tc(f, gso_size=500) == "redirect"
    assert datapath.port_stats(3)["rx_packets"] == 2 + -(-(3000 - headers) // 500)
    # Segments one byte too long: up to vale, not dropped.
    assert datapath.run_tc(f, gso_size=fits + 1, gso_segs=2) == "pass"
    assert datapath.passed()["gso"] == 1
    # Headers it cannot measure: up as well.
    assert datapath.run_tc(frame(B, A, 3000, 0x0806), gso_size=1000, gso_segs=3) == "pass"
    assert datapath.passed()["gso"] == 2


def test_last_seen_is_refreshed_at_most_once_a_second(datapath):
    old = 12345
    datapath.set_src(mac_to_key(A), 3, last_seen_ns=old)
    assert datapath.run_tc(frame(B, A)) == "redirect"
    port, seen = datapath.src(mac_to_key(A))
    assert port == 3 and seen > old
    assert datapath.run_tc(frame(B, A)) == "redirect"
    assert datapath.src(mac_to_key(A))[1] == seen
    # Frames that go up leave it to vale.
    datapath.set_src(mac_to_key(A), 3, last_seen_ns=old)
    assert datapath.run_tc(frame(C, A)) == "pass"
    assert datapath.src(mac_to_key(A))[1] == old


def test_map_entries_and_keys(datapath):
    key = mac_to_key(C) | 7 << 48       # a VLAN in the key reaches the map's vlan field
    datapath.set_dst(key, 9, 42, 9000, _bpf.DST_PEER)
    assert datapath.dst(key) == (9, 42, 9000, _bpf.DST_PEER)
    assert datapath.destinations()[key] == (9, 42, 9000, _bpf.DST_PEER)
    assert datapath.dst(mac_to_key(C)) is None
    assert set(datapath.sources()) == {mac_to_key(A), mac_to_key(B)}
    assert datapath.ports() == {LO: (3, 3, 0), OTHER: (4, 3, 0)}
    assert datapath.forget_port(4) == 2          # B as source and as destination
    assert datapath.delete_dst(key) and not datapath.delete_dst(key)
    assert datapath.clear_macs() == 2            # A's two entries
    assert datapath.sources() == {} and datapath.destinations() == {}
    with pytest.raises(ValueError):
        datapath.set_src(1 << 60, 1)
    with pytest.raises(ValueError):
        datapath.set_src(mac_to_key(A), _bpf.MAX_PORTS)


def test_a_full_map_says_so():
    if os.geteuid() != 0:
        pytest.skip("needs root (loading BPF programs, bpffs)")
    pins = _bpf.pin_dir(f"vbpf{os.getpid()}f")
    shutil.rmtree(pins, ignore_errors=True)
    d = _bpf.Datapath(pins, macs=4)
    try:
        for i in range(4):
            d.set_src(i << 8, 1)
        with pytest.raises(OSError, match="vale_src is full") as exc:
            d.set_src(5 << 8, 1)
        assert exc.value.errno == 7
        d.set_src(1 << 8, 2)            # an entry there already may change
        d.close()
        # Pinned maps of another size are not taken for these.
        with pytest.raises(OSError, match="loading"):
            _bpf.Datapath(pins, macs=8)
        again = _bpf.Datapath(pins, macs=4)
        assert again.src(1 << 8)[0] == 2
        again.remove()
        assert not os.path.exists(pins)
    finally:
        d.close()
        shutil.rmtree(pins, ignore_errors=True)


def test_a_refused_program_says_why(tmp_path):
    """A program the verifier refuses: the OSError carries the verifier's reason (here a
    header read past what the program checked), for the switch's log."""
    if os.geteuid() != 0:
        pytest.skip("needs root (loading BPF programs, bpffs)")
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("needs clang to build a broken program")
    source = (HEADER.parent / "fastpath.bpf.c").read_text()
    broken = source.replace("if (data + sizeof(*eth) <= end) {", "if (data + 1 <= end) {")
    assert broken != source
    (tmp_path / "broken.bpf.c").write_text(broken)
    shutil.copy(HEADER, tmp_path)
    multiarch = f"-I/usr/include/{sysconfig.get_config_var('MULTIARCH')}"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", multiarch, "-c",
                    str(tmp_path / "broken.bpf.c"), "-o", str(tmp_path / "broken.o")],
                   check=True)
    pins = _bpf.pin_dir(f"vbpf{os.getpid()}r")
    try:
        with pytest.raises(OSError, match=r"loading .*outside of the packet") as exc:
            _bpf.Datapath(pins, object_path=str(tmp_path / "broken.o"))
        assert exc.value.errno == 13            # EACCES: the verifier's no
    finally:
        shutil.rmtree(pins, ignore_errors=True)
