"""The forwarding rules, each tested directly, on the Cython core and the model."""

from __future__ import annotations

from tests.frames import BROADCAST, frame, mac


def drops(sw, port):
    return sw.stats()["ports"][port]["drops"]


def test_unknown_unicast_floods_to_every_other_port(make_switch):
    sw = make_switch("a", "b", "c")
    f = frame(mac(2), mac(1))
    sw.inject("a", [f])
    assert sw.forward_all() == 1
    assert sw.drain("a") == []
    assert sw.drain("b") == [f]
    assert sw.drain("c") == [f]
    assert sw.stats()["ports"]["a"]["flood_packets"] == 1


def test_learned_destination_reaches_only_its_port(make_switch):
    sw = make_switch("a", "b", "c")
    sw.inject("b", [frame(mac(1), mac(2))])       # b learns mac(2)
    sw.forward_all()
    for p in ("a", "b", "c"):
        sw.drain(p)
    f = frame(mac(2), mac(1), tag=7)
    sw.inject("a", [f])
    sw.forward_all()
    assert sw.drain("b") == [f]
    assert sw.drain("c") == []
    stats = sw.stats()["ports"]
    assert stats["a"]["flood_packets"] == 0
    assert stats["b"]["tx_packets"] == 1           # only f: b's own frame never came back
    assert stats["c"]["tx_packets"] == 1           # only the first flood


def test_broadcast_and_multicast_flood_even_when_known(make_switch):
    sw = make_switch("a", "b", "c")
    multicast = "01:00:5e:00:00:01"
    sw.inject("a", [frame(BROADCAST, mac(1)), frame(multicast, mac(1))])
    sw.forward_all()
    assert len(sw.drain("b")) == 2 and len(sw.drain("c")) == 2
    assert sw.stats()["ports"]["a"]["flood_packets"] == 2


def test_only_unicast_nonzero_sources_are_learned(make_switch):
    sw = make_switch("a", "b")
    sw.inject("a", [frame(mac(9), "01:00:5e:00:00:01"), frame(mac(9), "00:00:00:00:00:00"),
                    frame(mac(9), BROADCAST)])
    sw.forward_all()
    assert sw.fdb_show() == []
    assert len(sw.drain("b")) == 3                 # still forwarded (flooded)
    sw.inject("a", [frame(mac(9), mac(1))])
    sw.forward_all()
    assert [(e.mac, e.port, e.static) for e in sw.fdb_show()] == [(mac(1), "a", False)]


def test_frame_to_its_own_port_is_dropped(make_switch):
    sw = make_switch("a", "b")
    sw.inject("a", [frame(mac(2), mac(1))])
    sw.inject("a", [frame(mac(1), mac(2))])        # mac(2) now on a too; mac(1) is on a
    sw.forward_all()
    sw.drain("b")
    sw.inject("a", [frame(mac(1), mac(2))])
    sw.forward_all()
    assert sw.drain("b") == []
    assert drops(sw, "a")["own_port"] == 2


def test_runts_are_dropped_and_counted(make_switch):
    sw = make_switch("a", "b")
    sw.inject("a", [b"", b"\x01" * 13, frame(BROADCAST, mac(1), size=14)])
    sw.forward_all()
    assert sw.drain("b") == [frame(BROADCAST, mac(1), size=14)]
    assert drops(sw, "a")["runt"] == 2
    assert sw.stats()["ports"]["a"]["rx_packets"] == 3


def test_frames_larger_than_the_destination_takes_are_dropped(make_switch):
    sw = make_switch()
    sw.add_port("jumbo", slot_size=9216)
    sw.add_port("small", slot_size=1536)
    sw.add_port("big", slot_size=9216)
    big = frame(BROADCAST, mac(1), size=9000)
    ok = frame(BROADCAST, mac(1), size=1514)
    sw.inject("jumbo", [big, ok])
    sw.forward_all()
    assert sw.drain("small") == [ok]
    assert sw.drain("big") == [big, ok]
    assert drops(sw, "small")["too_big"] == 1
    # and a frame longer than the receiving port's own slots never gets in
    assert sw.inject("small", [big]) == 0
    assert drops(sw, "small")["too_big"] == 2


def test_full_destination_ring_drops_the_excess_without_blocking(make_switch):
    sw = make_switch()
    sw.add_port("a", rx_slots=64)
    sw.add_port("b", tx_slots=16)
    frames = [frame(BROADCAST, mac(1), tag=i) for i in range(40)]
    assert sw.inject("a", frames) == 40
    assert sw.forward_all() == 40
    assert sw.drain("b") == frames[:16]             # the first ones, in order
    assert drops(sw, "b")["ring_full"] == 24
    assert sw.stats()["ports"]["b"]["tx_packets"] == 16


def test_full_receive_ring_refuses_and_counts(make_switch):
    sw = make_switch()
    sw.add_port("a", rx_slots=4)
    sw.add_port("b")
    assert sw.inject("a", [frame(BROADCAST, mac(1))] * 6) == 4
    assert drops(sw, "a")["ring_full"] == 2


def test_order_is_kept_across_unicast_and_flood(make_switch):
    sw = make_switch("a", "b", "c")
    sw.inject("b", [frame(mac(1), mac(2))])
    sw.forward_all()
    for p in ("a", "b", "c"):
        sw.drain(p)
    mixed = [frame(mac(2) if i % 3 else BROADCAST, mac(1), tag=i) for i in range(30)]
    sw.inject("a", mixed)
    sw.forward_all()
    assert sw.drain("b") == mixed
    assert sw.drain("c") == [f for i, f in enumerate(mixed) if i % 3 == 0]


def test_learning_off_learns_nothing_and_still_forwards(make_switch):
    sw = make_switch("a", "b")
    sw.set_port("a", learning=False)
    sw.inject("a", [frame(mac(2), mac(1))])
    sw.forward_all()
    assert sw.fdb_show() == []
    assert len(sw.drain("b")) == 1


def test_flood_off_port_gets_no_unknown_unicast_but_gets_broadcast(make_switch):
    sw = make_switch("a", "b", "c")
    sw.set_port("c", flood=False)
    unknown, bcast = frame(mac(5), mac(1)), frame(BROADCAST, mac(1))
    sw.inject("a", [unknown, bcast])
    sw.forward_all()
    assert sw.drain("b") == [unknown, bcast]
    assert sw.drain("c") == [bcast]
    # a learned destination behind c still reaches it
    sw.inject("c", [frame(mac(1), mac(5))])
    sw.forward_all()
    sw.inject("a", [unknown])
    sw.forward_all()
    assert sw.drain("c") == [unknown]


def test_removing_a_port_forgets_its_macs_so_traffic_floods(make_switch):
    sw = make_switch("a", "b", "c")
    sw.inject("b", [frame(mac(1), mac(2))])
    sw.forward_all()
    sw.fdb_add(mac(3), "b")
    sw.remove_port("b")
    assert sw.fdb_show() == []
    f = frame(mac(2), mac(1))
    sw.drain("c")
    sw.inject("a", [f])
    sw.forward_all()
    assert sw.drain("c") == [f]


def test_batches_are_counted_and_bounded(make_switch):
    sw = make_switch("a", "b", batch=32)
    sw.inject("a", [frame(BROADCAST, mac(1))] * 100)
    assert sw.forward("a") == 32
    assert sw.forward_all() == 68
    stats = sw.stats()
    assert stats["batches"] == 4 and stats["batch_frames"] == 100
    assert stats["batch_hist"][5] == 3            # three batches of 32 (bucket <= 32)
    assert stats["batch_hist"][2] == 1            # one of 4


def test_counters_add_up(make_switch):
    sw = make_switch("a", "b", "c")
    frames = [frame(BROADCAST, mac(1), size=100)] * 5 + [frame(mac(2), mac(1), size=70)] * 3
    sw.inject("a", frames)
    sw.forward_all()
    ports = sw.stats()["ports"]
    assert ports["a"]["rx_packets"] == 8 and ports["a"]["rx_bytes"] == 5 * 100 + 3 * 70
    assert ports["b"]["tx_packets"] == 8 and ports["b"]["tx_bytes"] == 710
    assert ports["a"]["flood_packets"] == 8


def test_a_source_a_port_may_not_send_from_is_dropped_before_learning(make_switch):
    """Rule 3b: after the VLAN check, a port's allowed MACs (its guards); a spoofed frame
    is neither learned nor forwarded, and a runt is a runt first."""
    sw = make_switch("a", "b")
    sw.set_port("a", allowed_macs=[mac(1)])
    sw.inject("a", [frame(BROADCAST, mac(2)), b"\x01" * 13, frame(mac(3), mac(1))])
    sw.forward_all()
    assert len(sw.drain("b")) == 1
    assert drops(sw, "a")["spoofed"] == 1 and drops(sw, "a")["runt"] == 1
    assert [e.mac for e in sw.fdb_show()] == [mac(1)]
