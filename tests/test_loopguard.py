"""The loop guard on in-memory ports: a probe the switch sent, brought back in through
another port (as a loop would), blocks one port of the loop for loop_hold seconds; a
blocked port neither sends nor receives; probes of other switches are frames like any."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, frame, mac
from vale._fastpath import SwitchCore
from vale.switch import Switch, fdb_key

HOLD = 5.0


def core_with(ports: int) -> tuple[SwitchCore, list[int]]:
    core = SwitchCore(manual_clock=True, loop_hold=HOLD)
    return core, [core.add_port() for _ in range(ports)]


def probe_of(core: SwitchCore, port: int) -> bytes:
    assert core.send_loop_probe(port)
    out = core.drain(port)
    assert len(out) == 1
    return out[0]


def loop_back(core: SwitchCore, sent_by: int, back_in: int) -> None:
    """What a loop does: the probe that left by one port comes in by another."""
    core.inject(back_in, [probe_of(core, sent_by)])
    core.forward_all()


def drain_all(core: SwitchCore, ports: list[int]) -> dict[int, list[bytes]]:
    return {p: core.drain(p) for p in ports}


def test_a_probe_back_through_another_port_blocks_the_higher_of_the_two():
    core, (_a, b, c) = core_with(3)
    loop_back(core, sent_by=b, back_in=c)
    assert core.port_info(c)["blocked"] == HOLD and core.port_info(b)["blocked"] == 0
    snap = core.snapshot()["ports"]
    assert snap[c]["blocked"] and snap[c]["loops_found"] == 1
    assert snap[c]["drops"]["loop"] == 1            # the probe itself
    assert not snap[b]["blocked"] and snap[b]["loops_found"] == 0
    # The other way round blocks the same port: the higher index of the two.
    core2, (_a2, b2, c2) = core_with(3)
    loop_back(core2, sent_by=c2, back_in=b2)
    assert core2.port_info(c2)["blocked"] and not core2.port_info(b2)["blocked"]


def test_probes_crossing_each_other_block_one_port_not_both():
    core, (a, b, c) = core_with(3)
    from_b, from_c = probe_of(core, b), probe_of(core, c)
    core.inject(c, [from_b])
    core.inject(b, [from_c])
    core.forward_all()
    assert [core.port_info(p)["blocked"] > 0 for p in (a, b, c)] == [False, False, True]


def test_a_probe_back_through_the_port_it_left_by_blocks_that_port():
    core, (a, b) = core_with(2)
    loop_back(core, sent_by=a, back_in=a)
    assert core.port_info(a)["blocked"] and not core.port_info(b)["blocked"]


def test_a_blocked_port_neither_sends_nor_receives_until_its_hold_is_over():
    core, (a, b, c) = core_with(3)
    loop_back(core, sent_by=b, back_in=c)
    hello = frame(BROADCAST, mac(1), size=60)
    to_c = frame(mac(3), mac(1), size=60)
    core.inject(c, [frame(BROADCAST, mac(3), size=60)])     # c's frames: dropped
    core.inject(a, [hello])                                 # a's flood: not to c
    core.forward_all()
    assert drain_all(core, [a, b, c]) == {a: [], b: [hello], c: []}
    assert core.fdb_lookup(fdb_key(mac(3))) is None         # nothing learned from c
    assert core.snapshot()["ports"][c]["drops"]["loop"] == 2
    # Unicast known to sit behind c is dropped at c, counted there.
    core.fdb_add(fdb_key(mac(3)), c)
    core.inject(a, [to_c])
    core.forward_all()
    assert core.drain(c) == [] and core.snapshot()["ports"][c]["drops"]["loop"] == 3
    # No probe goes out of it either: it would block the other end of its loop too.
    assert not core.send_loop_probe(c)
    core.set_time(HOLD)
    core.inject(a, [hello, to_c])
    core.forward_all()
    assert core.drain(c) == [hello, to_c]
    assert not core.port_info(c)["blocked"] and core.send_loop_probe(c)


def test_a_block_forgets_what_the_loop_taught_the_table():
    core, (a, b, c) = core_with(3)
    core.inject(a, [frame(BROADCAST, mac(1), size=60)])
    core.inject(b, [frame(BROADCAST, mac(1), size=60)])      # a's host, back via the loop
    core.forward_all()
    drain_all(core, [a, b, c])
    assert core.fdb_lookup(fdb_key(mac(1))) == b
    loop_back(core, sent_by=b, back_in=c)
    assert core.fdb_lookup(fdb_key(mac(1))) is None            # floods again, and is relearned
    core.inject(a, [frame(BROADCAST, mac(1), size=60)])
    core.forward_all()
    assert core.fdb_lookup(fdb_key(mac(1))) == a


def test_the_loop_probes_source_is_never_learned():
    core, (a, b, c) = core_with(3)
    probe = probe_of(core, a)
    loop_back(core, sent_by=a, back_in=b)
    core.set_time(HOLD)
    core.inject(c, [probe])             # back again, through yet another port
    core.forward_all()
    assert core.snapshot()["fdb"]["entries"] == 0
    assert core.snapshot()["fdb"]["moved"] == 0


def test_a_probe_of_another_switch_is_flooded_as_any_frame():
    core, (a, b, c) = core_with(3)
    other, (x,) = core_with(1)
    foreign = probe_of(other, x)
    core.inject(a, [foreign])
    core.forward_all()
    assert drain_all(core, [a, b, c]) == {a: [], b: [foreign], c: [foreign]}
    assert not any(core.port_info(p)["blocked"] for p in (a, b, c))
    assert core.fdb_lookup(int.from_bytes(foreign[6:12], "little")) == a


def test_a_frame_to_the_probe_address_that_is_no_probe_is_flooded():
    core, (a, b) = core_with(2)
    probe = probe_of(core, a)
    not_a_probe = probe[:12] + b"\x88\xb5" + probe[14:]         # another EtherType
    core.inject(b, [not_a_probe, probe[:20]])                   # cut short: no id
    core.forward_all()
    assert core.drain(a) == [not_a_probe, probe[:20]]
    assert not core.port_info(b)["blocked"]


def test_a_probe_leaves_in_the_ports_own_vlan_and_counted_as_sent():
    core, (a, b) = core_with(2)
    probe = probe_of(core, a)
    assert len(probe) == 60 and probe[12:14] == b"\x88\xb6"     # untagged, no mode
    assert core.snapshot()["ports"][a]["tx_packets"] == 1
    core.set_port(a, vlan=("trunk", [20, 10]), native=20)
    assert probe_of(core, a)[12:14] == b"\x88\xb6"              # untagged: native
    core.set_port(a, vlan=("trunk", [20, 10]))
    tagged = probe_of(core, a)                                  # no native: lowest VLAN
    assert tagged[12:16] == b"\x81\x00\x00\x0a" and tagged[16:18] == b"\x88\xb6"
    core.set_port(b, vlan=("trunk", [10]))
    core.inject(b, [tagged])                # back in on a trunk carrying 10: a loop
    core.forward_all()
    assert core.port_info(b)["blocked"]


def test_a_switch_sends_probes_every_loop_probe_seconds_while_frames_come_and_none_at_zero():
    sw = Switch("vale0", manual_clock=True, loop_probe=0.5)
    for name in ("p1", "p2"):
        sw.add_port(name)

    def a_frame_comes() -> None:
        sw.inject("p1", [frame(BROADCAST, mac(1))])
        sw.forward_all()

    assert sw.send_loop_probes(100.0) == 0         # the first ones one interval on
    a_frame_comes()
    assert sw.send_loop_probes(100.4) == 0
    assert sw.send_loop_probes(100.5) == 2
    assert sw.send_loop_probes(100.9) == 0
    assert sw.send_loop_probes(101.0) == 0         # nothing came since: none
    assert sw.send_loop_probes(107.0) == 0
    a_frame_comes()
    assert sw.send_loop_probes(107.1) == 2         # the first frame brings them at once
    a_frame_comes()
    assert sw.send_loop_probes(107.5) == 0
    assert sw.send_loop_probes(107.6) == 2
    sw.configure(loop_probe=0)
    a_frame_comes()
    assert sw.send_loop_probes(200.0) == 0
    assert sw.stats()["settings"]["loop_probe"] == 0


@pytest.mark.parametrize("hold", [-1, "x", float("nan")])
def test_a_bad_loop_hold_is_refused(hold):
    core, _ = core_with(1)
    with pytest.raises((ValueError, TypeError)):
        core.configure(loop_hold=hold)
    assert core.snapshot()["settings"]["loop_hold"] == HOLD


def test_the_hub_lookup_finds_loops_too():
    core, (a, b) = core_with(2)
    core.configure(lookup="hub")
    loop_back(core, sent_by=a, back_in=b)
    assert core.port_info(b)["blocked"] and not core.port_info(a)["blocked"]
