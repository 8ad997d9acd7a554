"""Port guards and the move ban (docs/security.md, *The forwarding path*): a ban leaves a
MAC on the port that held it before the moves began, never on the one that took it over;
allowed source MACs (spoofed), sticky learning, BPDU handling. On the Cython core and the
model."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, frame, mac
from vale.settings import SettingError, parse

BPDU = "01:80:c2:00:00:00"


def send(sw, port, *frames):
    sw.inject(port, list(frames))
    sw.forward_all()


def drained(sw):
    return {p: sw.drain(p) for p in sw.ports()}


def tag_of(f):
    return int.from_bytes(f[14:18], "big")


def drops(sw, port, reason):
    return sw.stats()["ports"][port]["drops"][reason]


def table(sw):
    return {e.mac: e.port for e in sw.fdb_show()}


# -- the ban ---------------------------------------------------------------------------

def test_a_hijack_from_two_ports_leaves_the_victim_its_traffic(make_switch):
    """Two attacker ports send the victim's source MAC in turn: once the move damping
    trips, the MAC is back on the victim's port, its traffic goes there, and the
    attackers' frames are what is dropped (learn_banned), for the whole ban."""
    sw = make_switch("victim", "x1", "x2", "peer", move_limit=4, move_window=10, ban=60)
    victim, peer = mac(1), mac(2)
    send(sw, "victim", frame(BROADCAST, victim))
    send(sw, "peer", frame(BROADCAST, peer))
    drained(sw)
    for i in range(8):                              # x1, x2, x1, ... each a move or banned
        sw.set_time(1 + i * 0.1)
        send(sw, ("x1", "x2")[i % 2], frame(peer, victim, tag=i))
    assert table(sw)[victim] == "victim"
    assert drops(sw, "x1", "learn_banned") + drops(sw, "x2", "learn_banned") == 4
    drained(sw)
    for k in range(3):                              # the peer's echo requests
        send(sw, "peer", frame(victim, peer, tag=100 + k))
    out = drained(sw)
    assert len(out["victim"]) == 3 and out["x1"] == [] and out["x2"] == []
    sw.set_time(30)                                 # still banned: the attackers get nowhere
    send(sw, "x1", frame(peer, victim, tag=9))
    send(sw, "x2", frame(peer, victim, tag=9))
    assert table(sw)[victim] == "victim" and drops(sw, "x2", "learn_banned") >= 3
    send(sw, "victim", frame(peer, victim, tag=10))  # the victim itself still passes
    assert [tag_of(f) for f in drained(sw)["peer"]] == [10]


def test_a_ban_tripped_from_the_settled_port_lets_its_frame_pass(make_switch):
    sw = make_switch("a", "b", move_limit=3, move_window=10, ban=60)
    send(sw, "a", frame(BROADCAST, mac(1)))
    send(sw, "b", frame(BROADCAST, mac(1)))          # a -> b: the window starts, settled a
    send(sw, "a", frame(BROADCAST, mac(1)))          # b -> a
    send(sw, "b", frame(BROADCAST, mac(1)))          # a -> b: the limit
    assert table(sw) == {mac(1): "b"}
    drained(sw)
    send(sw, "a", frame(BROADCAST, mac(1), tag=7))   # trips: back on a, and a's frame passes
    assert table(sw) == {mac(1): "a"}
    assert drained(sw)["b"] != [] and drops(sw, "a", "learn_banned") == 0
    send(sw, "b", frame(BROADCAST, mac(1)))
    assert table(sw) == {mac(1): "a"} and drops(sw, "b", "learn_banned") == 1


def test_a_ban_never_points_at_a_removed_port(make_switch):
    sw = make_switch("a", "b", "c", move_limit=1, move_window=10, ban=60)
    send(sw, "a", frame(BROADCAST, mac(1)))
    send(sw, "b", frame(BROADCAST, mac(1)))          # a -> b, settled a
    sw.remove_port("a")
    sw.add_port("d")                                 # may take a's index
    send(sw, "c", frame(BROADCAST, mac(1)))          # trips: stays on b, the port it is on
    assert table(sw) == {mac(1): "b"} and drops(sw, "c", "learn_banned") == 1


# -- allowed source MACs ---------------------------------------------------------------

def test_allowed_macs_drop_other_sources_as_spoofed(make_switch):
    sw = make_switch("vm", "b", "c")
    sw.set_port("vm", allowed_macs=[mac(1)])
    send(sw, "vm", frame(BROADCAST, mac(1), tag=1), frame(BROADCAST, mac(2), tag=2),
         frame(mac(3), mac(9), tag=3), frame(BROADCAST, "03:00:00:00:00:01", tag=4))
    out = drained(sw)
    assert [tag_of(f) for f in out["b"]] == [1]
    assert drops(sw, "vm", "spoofed") == 3
    assert table(sw) == {mac(1): "vm"}               # nothing spoofed was learned
    assert sw.port_info("vm")["allowed_macs"] == [mac(1)]
    sw.set_port("vm", allowed_macs=[])               # any source again
    send(sw, "vm", frame(BROADCAST, mac(2)))
    assert drops(sw, "vm", "spoofed") == 3 and mac(2) in table(sw)


def test_a_spoofing_port_cannot_move_a_mac(make_switch):
    sw = make_switch("victim", "vm", "peer")
    sw.set_port("vm", allowed_macs=[mac(5)])
    send(sw, "victim", frame(BROADCAST, mac(1)))
    for i in range(10):
        send(sw, "vm", frame(BROADCAST, mac(1), tag=i))
    assert table(sw) == {mac(1): "victim"} and drops(sw, "vm", "spoofed") == 10
    assert sw.stats()["fdb"]["moved"] == 0


def test_sticky_allows_the_first_sources_only(make_switch):
    sw = make_switch("p", "q")
    sw.set_port("p", sticky=2)
    send(sw, "p", frame(BROADCAST, mac(1)), frame(BROADCAST, mac(2)),
         frame(BROADCAST, mac(3)), frame(BROADCAST, mac(1)))
    assert len(drained(sw)["q"]) == 3 and drops(sw, "p", "spoofed") == 1
    assert sw.port_info("p")["sticky_macs"] == [mac(1), mac(2)]
    sw.set_port("p", sticky=2)                       # set again: sticky ones forgotten
    send(sw, "p", frame(BROADCAST, mac(3)))
    assert drops(sw, "p", "spoofed") == 1 and sw.port_info("p")["sticky_macs"] == [mac(3)]


def test_sticky_counts_the_listed_macs(make_switch):
    sw = make_switch("p", "q")
    sw.set_port("p", allowed_macs=[mac(1)], sticky=2)
    send(sw, "p", frame(BROADCAST, mac(2)), frame(BROADCAST, mac(3)), frame(BROADCAST, mac(1)))
    assert drops(sw, "p", "spoofed") == 1
    info = sw.port_info("p")
    assert info["allowed_macs"] == [mac(1)] and info["sticky_macs"] == [mac(2)]


def test_allowed_macs_bad_input():
    for bad in ("01:00:5e:00:00:01", "nonsense", 5, ["02:00:00:00:00:01", 7]):
        with pytest.raises(SettingError):
            parse("port", {"allowed_macs": bad})
    assert parse("port", {"allowed_macs": "02:00:00:00:00:02, 02:00:00:00:00:01,"
                                          "02:00:00:00:00:02"}) == {
        "allowed_macs": ["02:00:00:00:00:01", "02:00:00:00:00:02"]}
    assert parse("port", {"allowed_macs": "any"}) == {"allowed_macs": []}
    with pytest.raises(SettingError):
        parse("port", {"sticky": -1})


def test_the_core_refuses_bad_allowed_macs(core_class):
    core = core_class(manual_clock=True)
    p = core.add_port()
    for bad in ([1], [0], [1 << 48], ["x"], list(range(2, 2 * 1026, 2))):
        with pytest.raises(ValueError):
            core.set_port(p, allowed_macs=bad)
    with pytest.raises(ValueError):
        core.set_port(p, bpdu="block")


# -- BPDUs -----------------------------------------------------------------------------

def test_bpdus_are_forwarded_by_default_and_dropped_when_asked(make_switch):
    sw = make_switch("a", "b")
    send(sw, "a", frame(BPDU, mac(1)))
    assert len(drained(sw)["b"]) == 1
    sw.set_port("a", bpdu="drop")
    send(sw, "a", frame(BPDU, mac(1)), frame(BROADCAST, mac(1)))
    assert len(drained(sw)["b"]) == 1 and drops(sw, "a", "bpdu") == 1


def test_bpdu_guard_blocks_the_port_until_set_again(make_switch):
    sw = make_switch("a", "b")
    sw.set_port("a", bpdu="guard")
    send(sw, "a", frame(BROADCAST, mac(1)))
    assert len(drained(sw)["b"]) == 1
    send(sw, "a", frame(BPDU, mac(1)), frame(BROADCAST, mac(1)), frame(mac(2), mac(1)))
    assert drained(sw)["b"] == [] and drops(sw, "a", "bpdu") == 3
    assert sw.port_info("a")["bpdu_blocked"]
    send(sw, "b", frame(BROADCAST, mac(2)))          # the other way still works
    assert len(drained(sw)["a"]) == 1
    sw.set_port("a", bpdu="guard")                   # re-armed
    send(sw, "a", frame(BROADCAST, mac(1)))
    assert len(drained(sw)["b"]) == 1 and not sw.port_info("a")["bpdu_blocked"]


def test_the_settings_as_valectl_and_the_state_file_give_them(make_switch):
    sw = make_switch("p", "q")
    sw.set_port("p", **parse("port", {"allowed_macs": f"{mac(2)},{mac(1)}", "sticky": "3",
                                      "bpdu": "drop"}))
    info = sw.port_info("p")
    assert (info["allowed_macs"], info["sticky"], info["bpdu"]) == ([mac(1), mac(2)], 3, "drop")
    saved = parse("attach", {key: info[key] for key in ("allowed_macs", "sticky", "bpdu")})
    again = make_switch()
    again.add_port("p", **saved)
    assert again.port_info("p")["allowed_macs"] == [mac(1), mac(2)]
    send(again, "p", frame(BROADCAST, mac(5)), frame(BROADCAST, mac(6)))
    assert drops(again, "p", "spoofed") == 1                 # 2 listed + 1 sticky
