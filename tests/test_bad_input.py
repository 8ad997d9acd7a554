"""Bad input: a clear ValueError from the API, and no frame length or content that makes
the data plane read or write outside its buffers."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.frames import BROADCAST, frame, mac
from tests.model import ModelCore
from vale._fastpath import SwitchCore
from vale.names import check_port_name, check_switch_name, mac_to_key, parse_port_ref
from vale.switch import Switch


@pytest.mark.parametrize("text", [
    "", "02:00:00:00:00", "02:00:00:00:00:00:00", "zz:00:00:00:00:01", "02-00:00:00:00:01",
    "0200.0000.0001", " 02:00:00:00:00:01", None, 5,
])
def test_bad_mac_strings(text):
    with pytest.raises(ValueError, match="MAC"):
        mac_to_key(text)


def test_mac_round_trip():
    from vale.names import key_to_mac
    assert key_to_mac(mac_to_key("02:AB:cd:00:00:01")) == "02:ab:cd:00:00:01"
    assert mac_to_key("01-00-5e-00-00-01") & 1        # the group bit is bit 0


def test_random_macs_are_local_unicast_and_differ():
    from vale.names import random_mac
    macs = {random_mac() for _ in range(64)}
    assert len(macs) == 64
    for text in macs:
        first = mac_to_key(text) & 0xFF
        assert first & 0x01 == 0 and first & 0x02, text    # unicast, locally administered


@pytest.mark.parametrize("name", ["", "a" * 16, "eth/1", "eth:1", "eth 1", ".", "..", "a\0b", 3])
def test_bad_port_names(name):
    with pytest.raises(ValueError):
        check_port_name(name)


@pytest.mark.parametrize("name", ["", "vale", "br0", "vale-0", "vale0:", "VALE0",
                                  "vale" + "x" * 12])
def test_bad_switch_names(name):
    with pytest.raises(ValueError, match="switch name"):
        check_switch_name(name)


def test_port_refs():
    assert parse_port_ref("vale0:eth1") == ("vale0", "eth1")
    for bad in ("vale0", "vale0:a:b", "eth1:vale0", ":x"):
        with pytest.raises(ValueError):
            parse_port_ref(bad)


@pytest.mark.parametrize("settings", [
    {"fdb_capacity": 0}, {"fdb_capacity": 1 << 30}, {"fdb_capacity": "big"},
    {"batch": 0}, {"batch": 1025}, {"ageing": -1}, {"ageing": "300"}, {"move_limit": 256},
    {"ban": -5}, {"move_window": True},
])
def test_bad_switch_settings(settings):
    with pytest.raises(ValueError):
        Switch("vale0", **settings)
    sw = Switch("vale0")
    with pytest.raises(ValueError):
        sw.configure(**settings)
    assert sw.stats()["settings"]["batch"] == 256     # unchanged


@pytest.mark.parametrize("settings", [{"ageing": -1}, {"move_window": -1}, {"ban": "x"}])
def test_a_switch_that_fails_to_start_closes_no_descriptor_it_did_not_open(settings):
    """The settings checked after the switch's memory is allocated: its descriptors were
    zeroes then, and cleaning up closed descriptor 0 (whatever it was by then)."""
    ours = os.open("/dev/null", os.O_RDONLY)
    saved = os.dup(0) if _is_open(0) else None
    os.dup2(ours, 0)
    try:
        with pytest.raises((ValueError, TypeError)):
            SwitchCore(**settings)
        assert _is_open(0)
    finally:
        if saved is None:
            os.close(0)
        else:
            os.dup2(saved, 0)
            os.close(saved)
        os.close(ours)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("settings", [
    {"rx_slots": 0}, {"rx_slots": 1000}, {"tx_slots": 1 << 21}, {"slot_size": 100},
    {"slot_size": 32}, {"slot_size": 1 << 20}, {"learn_limit": -1},
    {"rx_slots": 1 << 20, "slot_size": 2048},
])
def test_bad_port_settings(settings):
    sw = Switch("vale0")
    with pytest.raises(ValueError):
        sw.add_port("p0", **settings)
    assert sw.ports() == []


def test_unknown_settings_and_ports():
    sw = Switch("vale0")
    sw.add_port("a")
    with pytest.raises(ValueError, match="unknown port setting"):
        sw.set_port("a", speed=10)
    with pytest.raises(ValueError, match="unknown switch setting"):
        sw.configure(colour="red")
    with pytest.raises(ValueError, match="no port 'b'"):
        sw.inject("b", [b""])
    with pytest.raises(ValueError, match="already exists"):
        sw.add_port("a")
    with pytest.raises(ValueError, match="unicast"):
        sw.fdb_add(BROADCAST, "a")
    with pytest.raises(ValueError, match="unicast"):
        sw.fdb_add("00:00:00:00:00:00", "a")
    with pytest.raises(ValueError, match="bytes"):
        sw.inject("a", ["not bytes"])
    with pytest.raises(ValueError, match="manual_clock"):
        sw.set_time(5)


def test_core_rejects_bad_indexes():
    core = SwitchCore()
    for bad in (-1, 1024, 0, "0", 1.5, None):
        with pytest.raises(ValueError):
            core.forward(bad)


def test_all_ports_in_use():
    core = SwitchCore()
    for _ in range(1024):
        core.add_port(rx_slots=1, tx_slots=1, slot_size=64)
    with pytest.raises(ValueError, match="1024 ports in use"):
        core.add_port()


def test_a_slot_length_that_lies_is_dropped_not_trusted():
    core = SwitchCore()
    a, b = core.add_port(slot_size=128), core.add_port(slot_size=4096)
    good = frame(BROADCAST, mac(1), size=60)
    for lie in (129, 4096, 1 << 20, 0xFFFFFFFF):
        core._inject_lying(a, good, lie)
    core.inject(a, [good])
    core.forward_all()
    assert core.drain(b) == [good]
    snap = core.snapshot()["ports"][a]
    assert snap["drops"]["too_big"] == 4
    assert snap["rx_packets"] == 5 and snap["rx_bytes"] == 60


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4200),
                          st.binary(min_size=12, max_size=12)),
                min_size=1, max_size=60))
def test_random_lengths_and_contents_never_escape_the_slots(frames):
    """Every length from 0 past the slot size, any addresses: what comes out is exactly
    what the reference model lets out, port by port, and the counters are the model's."""
    cores = [SwitchCore(capacity=4, manual_clock=True), ModelCore(capacity=4, manual_clock=True)]
    results = []
    for core in cores:
        ports = [core.add_port(rx_slots=64, tx_slots=64, slot_size=size)
                 for size in (64, 2048, 4096)]
        for port, length, head in frames:
            core.inject(ports[port], [(head + bytes(range(256)) * 17)[:length]])
        core.forward_all()
        results.append(([core.drain(p) for p in ports], core.snapshot()["ports"]))
    (out, counters), (model_out, model_counters) = results
    assert out == model_out
    assert counters == model_counters
