"""802.1Q VLANs: which frames each port mode takes, where they go, the tags they leave
with, and the bad input each rule names (docs/operations.md, "VLANs"). On the Cython core
and the model."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, frame, mac, tagged, vlan_tag


def vlan_drops(sw, port):
    return sw.stats()["ports"][port]["drops"]["vlan"]


def drain_all(sw, *ports):
    return {p: sw.drain(p) for p in ports}


@pytest.fixture
def access_pair(make_switch):
    """a1, a2 in VLAN 10, b1 in VLAN 20, t a trunk of 10 and 20."""
    sw = make_switch("a1", "a2", "b1", "t")
    sw.set_port("a1", vlan="access:10")
    sw.set_port("a2", vlan="access:10")
    sw.set_port("b1", vlan="access:20")
    sw.set_port("t", vlan="trunk:10,20")
    return sw


def test_floods_stay_inside_their_vlan_and_leave_a_trunk_tagged(access_pair):
    sw = access_pair
    f = frame(BROADCAST, mac(1), tag=1)
    sw.inject("a1", [f])
    sw.forward_all()
    out = drain_all(sw, "a1", "a2", "b1", "t")
    assert out == {"a1": [], "a2": [f], "b1": [], "t": [tagged(f, vlan_tag(10))]}


def test_a_tagged_frame_from_a_trunk_reaches_its_access_port_untagged(access_pair):
    sw = access_pair
    f = frame(BROADCAST, mac(5), tag=2)
    sw.inject("t", [tagged(f, vlan_tag(20, pcp=5))])
    sw.forward_all()
    assert drain_all(sw, "a1", "a2", "b1") == {"a1": [], "a2": [], "b1": [f]}
    assert [(e.mac, e.vlan, e.port) for e in sw.fdb_show()] == [(mac(5), 20, "t")]


def test_the_mac_table_is_keyed_by_vlan_and_mac(access_pair):
    sw = access_pair
    sw.inject("a1", [frame(BROADCAST, mac(1))])
    sw.inject("t", [tagged(frame(BROADCAST, mac(1)), vlan_tag(20))])
    sw.forward_all()
    assert [(e.mac, e.vlan, e.port) for e in sw.fdb_show()] == [(mac(1), 10, "a1"),
                                                                 (mac(1), 20, "t")]
    assert [e.port for e in sw.fdb_show(vlan=20)] == ["t"]
    drain_all(sw, "a1", "a2", "b1", "t")
    # Unicast to mac(1) from b1 (VLAN 20) goes to the trunk, tagged; not to a1.
    f = frame(mac(1), mac(2))
    sw.inject("b1", [f])
    sw.forward_all()
    assert drain_all(sw, "a1", "a2", "t") == {"a1": [], "a2": [],
                                               "t": [tagged(f, vlan_tag(20))]}


def test_a_trunks_native_vlan_travels_untagged(make_switch):
    sw = make_switch("a", "t")
    sw.set_port("a", vlan="access:1")
    sw.set_port("t", vlan="trunk:10", native=1)
    f = frame(BROADCAST, mac(1))
    sw.inject("t", [f])
    sw.inject("a", [frame(BROADCAST, mac(2), tag=3)])
    sw.forward_all()
    assert sw.drain("a") == [f]
    assert sw.drain("t") == [frame(BROADCAST, mac(2), tag=3)]
    assert sw.port_info("t")["vlan"] == "trunk:10" and sw.port_info("t")["native"] == 1


def test_ports_without_a_vlan_mode_carry_tags_as_they_come(make_switch):
    sw = make_switch("n1", "n2", "t")
    sw.set_port("t", vlan="trunk:7")
    f = tagged(frame(BROADCAST, mac(1), tag=4), vlan_tag(7, pcp=3))
    plain = frame(BROADCAST, mac(1), tag=5)
    sw.inject("n1", [f, plain])
    sw.forward_all()
    assert sw.drain("n2") == [f, plain]            # the tag and its priority as they came
    assert sw.drain("t") == [f]                    # VLAN 7 only: untagged is VLAN 0


@pytest.mark.parametrize(("port_vlan", "native", "tags"), [
    ("access:10", 0, [vlan_tag(10, tpid=0x88A8), vlan_tag(10)]),   # two tags
    ("trunk:10", 0, [vlan_tag(10), vlan_tag(20)]),                # two tags
    ("access:10", 0, [vlan_tag(4095)]),                           # reserved VLAN
    ("access:10", 0, [vlan_tag(20)]),                             # a VLAN it lacks
    ("trunk:10", 0, [vlan_tag(11)]),                              # a VLAN it lacks
    ("trunk:10", 0, []),                                          # untagged, no native
    ("trunk:10", 0, [vlan_tag(0)]),                               # priority, no native
])
def test_frames_a_vlan_port_refuses_are_dropped_and_counted(make_switch, port_vlan, native,
                                                             tags):
    sw = make_switch("p", "other")
    sw.set_port("p", vlan=port_vlan, native=native)
    sw.set_port("other", vlan="trunk:10,11,20")
    sw.inject("p", [tagged(frame(BROADCAST, mac(1)), *tags)])
    sw.forward_all()
    assert sw.drain("other") == []
    assert vlan_drops(sw, "p") == 1
    assert sw.fdb_show() == []


def test_a_switch_without_vlan_modes_ignores_vlans(make_switch):
    """As the Linux bridge without vlan_filtering: tags carried as they come, every MAC in
    VLAN 0, not even VLAN 4095 refused."""
    sw = make_switch("p", "q")
    frames = [tagged(frame(BROADCAST, mac(1), tag=1), vlan_tag(4095)),
              tagged(frame(BROADCAST, mac(1), tag=2), vlan_tag(7, pcp=2))]
    sw.inject("p", frames)
    sw.forward_all()
    assert sw.drain("q") == frames
    assert [(e.mac, e.vlan) for e in sw.fdb_show()] == [(mac(1), 0)]


def test_a_reserved_vlan_tag_is_dropped_on_a_port_without_a_mode_once_vlans_are_on(
        make_switch):
    sw = make_switch("p", "q", "t")
    sw.set_port("t", vlan="trunk:7")
    sw.inject("p", [tagged(frame(BROADCAST, mac(1)), vlan_tag(4095))])
    sw.forward_all()
    assert sw.drain("q") == [] and vlan_drops(sw, "p") == 1


def test_turning_vlans_on_or_off_forgets_what_the_switch_learned(make_switch):
    sw = make_switch("a", "b", "t")
    sw.inject("a", [frame(BROADCAST, mac(1))])
    sw.forward_all()
    assert len(sw.fdb_show()) == 1
    sw.set_port("t", vlan="trunk:7")               # keys of a's MACs would differ now
    assert sw.fdb_show() == []
    sw.inject("a", [frame(BROADCAST, mac(1))])
    sw.forward_all()
    assert len(sw.fdb_show()) == 1
    sw.remove_port("t")                            # the last port with a mode goes
    assert sw.fdb_show() == []


def test_a_priority_tag_on_an_access_port_joins_its_vlan_and_is_removed(make_switch):
    sw = make_switch("a", "b")
    sw.set_port("a", vlan="access:10")
    sw.set_port("b", vlan="access:10")
    f = frame(BROADCAST, mac(1), tag=6)
    sw.inject("a", [tagged(f, vlan_tag(0, pcp=6))])
    sw.forward_all()
    assert sw.drain("b") == [f]


def test_a_tag_needs_its_four_bytes_once_vlans_are_on(make_switch):
    sw = make_switch("p", "q", "t")
    sw.set_port("t", vlan="trunk:7")
    runt = frame(BROADCAST, mac(1))[:12] + b"\x81\x00\x00"     # 15 bytes: a tag cut short
    sw.inject("p", [runt])
    sw.forward_all()
    assert sw.drain("q") == [] and vlan_drops(sw, "p") == 1


def test_unicast_to_a_port_outside_the_vlan_is_dropped_and_counted(make_switch):
    sw = make_switch("a", "b")
    sw.fdb_add(mac(2), "b", vlan=10)               # static, on a port not carrying 10
    sw.set_port("a", vlan="access:10")
    sw.set_port("b", vlan="access:20")
    sw.inject("a", [frame(mac(2), mac(1))])
    sw.forward_all()
    assert sw.drain("b") == [] and vlan_drops(sw, "a") == 1


def test_changing_a_ports_vlans_forgets_what_it_learned(make_switch):
    sw = make_switch("a", "b")
    sw.inject("a", [frame(BROADCAST, mac(1))])
    sw.forward_all()
    assert len(sw.fdb_show()) == 1
    sw.set_port("a", vlan="access:5")
    assert sw.fdb_show() == []


@pytest.mark.parametrize(("settings", "message"), [
    ({"vlan": "access:0"}, "1 to 4094"),
    ({"vlan": "access:4095"}, "1 to 4094"),
    ({"vlan": "trunk:"}, "trunk:N"),
    ({"vlan": "trunk:1,x"}, "trunk:N"),
    ({"vlan": "access:1,2"}, "access:N"),
    ({"vlan": 10}, "none, access:N"),
    ({"vlan": "none", "native": 3}, "native"),
    ({"vlan": "access:10", "native": 11}, "native"),
    ({"vlan": "trunk:10", "native": 4095}, "native"),
    ({"native": "one"}, "native"),
])
def test_bad_vlan_settings_are_refused_and_change_nothing(make_switch, settings, message):
    from vale.settings import of_scope
    sw = make_switch("a", "b")
    sw.set_port("a", vlan="trunk:10", native=1)
    before = sw.port_info("a")
    with pytest.raises(ValueError, match=message):
        parsed = {k: of_scope("port")[k].parse(v) for k, v in settings.items()}
        sw.set_port("a", **parsed)
    assert sw.port_info("a") == before


def test_a_transmit_mirror_gets_what_its_port_sent_in_the_ports_vlans(make_switch):
    if not hasattr(make_switch("x")._core, "set_mirror"):
        pytest.skip("the model has no mirrors")
    sw = make_switch("src", "d", "m")
    sw.set_port("src", vlan="trunk:10,20")
    sw.set_port("d", vlan="access:10")
    sw.set_port("m", vlan="access:30")              # gets no flood of 10 or 20 itself
    sw.set_mirror("d", tx_to="m")
    in10 = frame(BROADCAST, mac(1), tag=10)
    in20 = frame(BROADCAST, mac(1), tag=20)
    sw.inject("src", [tagged(in10, vlan_tag(10)), tagged(in20, vlan_tag(20))])
    sw.forward_all()
    assert sw.drain("d") == [in10]
    # m gets a copy of what d sent (VLAN 10, tagged: not m's VLAN), not VLAN 20's flood.
    assert sw.drain("m") == [tagged(in10, vlan_tag(10))]
