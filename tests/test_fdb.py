"""The MAC table: ageing, statics, learn limits, fair eviction, moves and their damping,
flush and resizing. On the Cython core and the model, on a manual clock."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, frame, mac
from vale._fastpath import SwitchCore


def learn(sw, port, *macs, dst=BROADCAST):
    sw.inject(port, [frame(dst, m) for m in macs])
    sw.forward_all()
    for p in sw.ports():
        sw.drain(p)


def table(sw):
    return {e.mac: e.port for e in sw.fdb_show()}


def fdb_stats(sw):
    return sw.stats()["fdb"]


# -- ageing ---------------------------------------------------------------------------

def test_entries_age_out_after_the_ageing_time(make_switch):
    sw = make_switch("a", "b", ageing=300)
    learn(sw, "a", mac(1))
    sw.set_time(200)
    learn(sw, "b", mac(2))
    sw.set_time(299.9)
    assert table(sw) == {mac(1): "a", mac(2): "b"}
    sw.set_time(300)
    assert table(sw) == {mac(2): "b"}
    assert fdb_stats(sw)["expired"] == 1
    sw.set_time(500)
    assert table(sw) == {}
    assert fdb_stats(sw)["expired"] == 2


def test_traffic_refreshes_an_entry(make_switch):
    sw = make_switch("a", "b", ageing=10)
    learn(sw, "a", mac(1))
    for t in range(5, 50, 5):
        sw.set_time(t)
        learn(sw, "a", mac(1))
    assert table(sw) == {mac(1): "a"}
    sw.set_time(59)
    assert table(sw) == {}


def test_an_aged_destination_floods_again(make_switch):
    sw = make_switch("a", "b", "c", ageing=10)
    learn(sw, "b", mac(2))
    sw.set_time(10)
    f = frame(mac(2), mac(1))
    sw.inject("a", [f])
    sw.forward_all()
    assert sw.drain("c") == [f]


def test_ageing_zero_means_never(make_switch):
    sw = make_switch("a", ageing=0)
    learn(sw, "a", mac(1))
    sw.set_time(10_000_000)
    assert table(sw) == {mac(1): "a"}


def test_ageing_can_be_changed(make_switch):
    sw = make_switch("a")
    learn(sw, "a", mac(1))
    sw.set_time(100)
    sw.configure(ageing=50)
    assert table(sw) == {}


def test_clock_never_goes_backwards(make_switch):
    sw = make_switch()
    sw.set_time(5)
    with pytest.raises(ValueError, match="backwards"):
        sw.set_time(4)


# -- statics --------------------------------------------------------------------------

def test_static_entries_neither_age_nor_move(make_switch):
    sw = make_switch("a", "b", "c", ageing=10)
    sw.fdb_add(mac(1), "a")
    sw.set_time(1000)
    learn(sw, "b", mac(1))                          # mac(1) shows up on b: not re-learned
    assert [(e.mac, e.port, e.static) for e in sw.fdb_show()] == [(mac(1), "a", True)]
    f = frame(mac(1), mac(3))
    sw.inject("c", [f])
    sw.forward_all()
    assert sw.drain("a") == [f] and sw.drain("b") == []
    assert fdb_stats(sw)["moved"] == 0


def test_static_replaces_a_learned_entry_and_del_removes_it(make_switch):
    sw = make_switch("a", "b")
    learn(sw, "a", mac(1))
    sw.fdb_add(mac(1), "b")
    assert [(e.port, e.static) for e in sw.fdb_show()] == [("b", True)]
    sw.fdb_del(mac(1))
    assert sw.fdb_show() == []
    with pytest.raises(ValueError, match="not in the FDB"):
        sw.fdb_del(mac(1))


def test_flush_keeps_statics_unless_asked(make_switch):
    sw = make_switch("a", "b")
    learn(sw, "a", mac(1), mac(2))
    learn(sw, "b", mac(3))
    sw.fdb_add(mac(4), "a")
    assert sw.fdb_flush("a") == 2
    assert table(sw) == {mac(3): "b", mac(4): "a"}
    assert sw.fdb_flush() == 1
    assert table(sw) == {mac(4): "a"}
    assert sw.fdb_flush(statics=True) == 1
    assert table(sw) == {}


# -- learn limit ----------------------------------------------------------------------

def test_learn_limit_drops_frames_from_new_macs(make_switch):
    sw = make_switch("a", "b")
    sw.set_port("a", learn_limit=3)
    learn(sw, "a", *(mac(i) for i in range(1, 6)))
    assert sorted(table(sw)) == [mac(1), mac(2), mac(3)]
    assert sw.stats()["ports"]["a"]["drops"]["learn_limit"] == 2
    # known MACs keep passing
    sw.inject("a", [frame(BROADCAST, mac(2))])
    sw.forward_all()
    assert len(sw.drain("b")) == 1
    # room again once an entry ages out
    sw.set_time(400)
    learn(sw, "a", mac(5))
    assert table(sw) == {mac(5): "a"}


# -- eviction -------------------------------------------------------------------------

def test_a_port_spraying_macs_evicts_only_its_own(make_switch):
    sw = make_switch("good", "bad", "other", fdb_capacity=64)
    learn(sw, "good", *(mac(i) for i in range(1, 21)))
    learn(sw, "other", *(mac(i) for i in range(100, 105)))
    for burst in range(10):
        sw.set_time(burst + 1)
        learn(sw, "bad", *(mac(1000 + burst * 50 + i) for i in range(50)))
    t = table(sw)
    assert sum(p == "good" for p in t.values()) == 20
    assert sum(p == "other" for p in t.values()) == 5
    assert sum(p == "bad" for p in t.values()) == 64 - 25
    assert fdb_stats(sw)["evicted"] == 500 - (64 - 25)
    # the sprayer kept its newest
    assert mac(1000 + 9 * 50 + 49) in t


def test_eviction_takes_from_the_largest_port_its_oldest_entry(make_switch):
    sw = make_switch("a", "b", "c", fdb_capacity=6)
    learn(sw, "a", mac(1), mac(2), mac(3), mac(4))
    sw.set_time(1)
    learn(sw, "b", mac(5), mac(6))
    sw.set_time(2)
    learn(sw, "c", mac(7))                          # a holds most: its oldest, mac(1), goes
    assert mac(1) not in table(sw) and len(table(sw)) == 6
    learn(sw, "c", mac(8))                          # a still largest (3): mac(2) goes
    assert mac(2) not in table(sw)


def test_statics_are_never_evicted(make_switch):
    sw = make_switch("a", "b", fdb_capacity=3)
    sw.fdb_add(mac(1), "a")
    sw.fdb_add(mac(2), "a")
    sw.fdb_add(mac(3), "a")
    learn(sw, "b", mac(4))                          # no room, nothing to evict: not learned
    assert table(sw) == {mac(1): "a", mac(2): "a", mac(3): "a"}
    with pytest.raises(ValueError, match="full of static"):
        sw.fdb_add(mac(5), "b")


def test_shrinking_the_table_evicts_fairly(make_switch):
    sw = make_switch("a", "b")
    learn(sw, "a", *(mac(i) for i in range(10)))
    learn(sw, "b", *(mac(i) for i in range(100, 104)))
    sw.fdb_add(mac(500), "b")
    sw.configure(fdb_capacity=9)
    t = table(sw)
    assert len(t) == 9 and mac(500) in t
    assert sum(p == "a" for p in t.values()) == 4
    assert sum(p == "b" for p in t.values()) == 5   # 4 learned + the static
    assert fdb_stats(sw)["evicted"] == 6
    sw.fdb_add(mac(501), "a")
    with pytest.raises(ValueError, match="static"):
        sw.configure(fdb_capacity=1)               # two statics cannot fit in one
    assert len(table(sw)) == 9                      # and nothing changed
    sw.configure(fdb_capacity=1000)
    learn(sw, "a", *(mac(i) for i in range(200, 300)))
    assert len(table(sw)) == 109                    # 9 + 100: room again


# -- moves and damping ----------------------------------------------------------------

def test_a_mac_that_moves_is_relearned_and_counted(make_switch):
    sw = make_switch("a", "b", "c")
    learn(sw, "a", mac(1))
    learn(sw, "b", mac(1))
    assert table(sw) == {mac(1): "b"}
    assert fdb_stats(sw)["moved"] == 1
    f = frame(mac(1), mac(3))
    sw.inject("c", [f])
    sw.forward_all()
    assert sw.drain("b") == [f] and sw.drain("a") == []


def test_a_flapping_mac_is_banned_then_learned_again(make_switch):
    sw = make_switch("a", "b", move_limit=4, move_window=10, ban=60)
    learn(sw, "a", mac(1))
    for i in range(4):                              # four moves inside the window: allowed
        sw.set_time(1 + i)
        learn(sw, "b" if i % 2 == 0 else "a", mac(1))
    assert table(sw) == {mac(1): "a"} and fdb_stats(sw)["moved"] == 4
    sw.set_time(6)
    learn(sw, "b", mac(1))                          # the fifth: banned, frame dropped
    assert table(sw) == {mac(1): "a"}
    assert sw.stats()["ports"]["b"]["drops"]["learn_banned"] == 1
    sw.set_time(60)
    learn(sw, "a", mac(1))                          # on its own port it still passes
    learn(sw, "b", mac(1))
    assert sw.stats()["ports"]["b"]["drops"]["learn_banned"] == 2
    sw.set_time(66)                                 # the ban is over
    learn(sw, "b", mac(1))
    assert table(sw) == {mac(1): "b"} and fdb_stats(sw)["moved"] == 5


def test_moves_spread_out_in_time_are_never_banned(make_switch):
    sw = make_switch("a", "b", move_limit=2, move_window=10, ban=60)
    for i in range(20):
        sw.set_time(i * 6)
        learn(sw, "ab"[i % 2], mac(1))
    assert fdb_stats(sw)["moved"] == 19


def test_move_limit_zero_turns_damping_off(make_switch):
    sw = make_switch("a", "b", move_limit=0)
    for i in range(100):
        learn(sw, "ab"[i % 2], mac(1))
    assert fdb_stats(sw)["moved"] == 99


# -- size -----------------------------------------------------------------------------

def test_a_million_entries():
    """Cython core only: the model would take minutes."""
    core = SwitchCore(capacity=1_000_000, manual_clock=True)
    a, b = core.add_port(), core.add_port()
    base = 0x02_00_00_00_00_00.to_bytes(6, "big")
    for i in range(1_000_000):
        core.fdb_add(int.from_bytes(base[:3] + i.to_bytes(3, "big"), "little") & ~1, a + (i & 1))
    snap = core.snapshot()["fdb"]
    assert snap["entries"] == 1_000_000 and snap["static"] == 1_000_000
    for i in (0, 1, 499_999, 999_999):
        key = int.from_bytes(base[:3] + i.to_bytes(3, "big"), "little")
        assert core.fdb_lookup(key) == a + (i & 1)
    # full: learning a new MAC is refused (all static), and frames still flow
    frame_ = bytes.fromhex("ffffffffffff") + bytes.fromhex("060000000001") + bytes(48)
    core.inject(a, [frame_])
    core.forward_all()
    assert len(core.drain(b)) == 1
    assert core.snapshot()["fdb"]["entries"] == 1_000_000


# -- resizing while the table changes ---------------------------------------------------

def core_table(core):
    return {key: port for key, port, _static, _age in core.fdb_entries()}


def test_a_resize_in_chunks_keeps_every_change_made_between_them():
    """Learning, moves, removals and statics between the chunks of a resize (one entry a
    chunk here), to entries whose cells were copied already and to ones not yet: each
    lands in the table that takes over, as it would without a resize."""
    core = SwitchCore(capacity=64, manual_clock=True, move_limit=0)
    a, b, c = core.add_port(), core.add_port(), core.add_port()
    keys = [int.from_bytes(bytes.fromhex(mac(i).replace(":", "")), "little") for i in range(400)]

    def learn_on(port, *which):
        core.inject(port, [frame(BROADCAST, mac(i)) for i in which])
        core.forward_all()
        for p in (a, b, c):
            core.drain(p)

    learn_on(a, *range(40))                     # entries 0..39, copied in that order
    want = {keys[i]: a for i in range(40)}
    calls = []

    def between():
        n = len(calls)                          # about n entries are copied by now
        calls.append(n)
        if n == 10:
            for i in (2, 35):                   # moves: one copied, one not yet
                learn_on(b, i)
                want[keys[i]] = b
        elif n == 12:
            for i in (3, 36):                   # removals
                core.fdb_del(keys[i])
                del want[keys[i]]
        elif n == 14:
            learn_on(c, 100, 101)               # new entries: in the holes 3 and 36 left
            learn_on(c, 102)                    # and above the last entry
            want.update({keys[100]: c, keys[101]: c, keys[102]: c})
        elif n == 16:
            core.fdb_add(keys[5], c)            # a static replacing a learned entry
            want[keys[5]] = c

    core.set_capacity(1000, chunk=1, between=between)
    assert len(calls) > 40                      # the resize ran in many holds of the lock
    assert core_table(core) == want
    for key, port in want.items():
        assert core.fdb_lookup(key) == port
    snap = core.snapshot()["fdb"]
    assert snap["entries"] == len(want) and snap["capacity"] == 1000
    learn_on(a, *range(200, 300))               # the new cells take the room they were made for
    assert len(core_table(core)) == len(want) + 100


def test_a_shrink_in_chunks_evicts_down_to_the_limit_while_learning_goes_on():
    core = SwitchCore(capacity=4096, manual_clock=True)
    a, b = core.add_port(), core.add_port()
    core.inject(a, [frame(BROADCAST, mac(i)) for i in range(1000)])
    core.forward_all()
    learned_during = []

    def between():
        i = 5000 + len(learned_during)
        core.inject(b, [frame(BROADCAST, mac(i))])
        core.forward_all()
        learned_during.append(i)

    core.set_capacity(100, chunk=50, between=between)
    entries = core_table(core)
    assert len(entries) == 100 and core.snapshot()["fdb"]["capacity"] == 100
    assert len(learned_during) > 20
    for key, port in entries.items():
        assert core.fdb_lookup(key) == port
    # fair eviction: the port learning meanwhile keeps its share, not the whole table
    assert sum(p == b for p in entries.values()) == min(len(learned_during), 50)


def test_a_second_resize_while_one_is_under_way_is_refused():
    core = SwitchCore(capacity=64, manual_clock=True)
    core.add_port()
    refused = []

    def between():
        if not refused:
            with pytest.raises(ValueError, match="being resized"):
                core.set_capacity(128)
            refused.append(True)

    core.set_capacity(4096, chunk=1, between=between)
    assert refused and core.snapshot()["fdb"]["capacity"] == 4096
    core.set_capacity(64)                        # and once it is over, another may run
    assert core.snapshot()["fdb"]["capacity"] == 64


# -- the journal the kernel fast path mirrors the table from ---------------------------

def key_of(n):
    return int.from_bytes(bytes.fromhex(mac(n).replace(":", "")), "little")


def test_the_journal_lists_learning_moves_ageing_and_removals_in_order():
    core = SwitchCore(capacity=64, manual_clock=True, ageing=10, move_limit=0)
    a, b, c = core.add_port(), core.add_port(), core.add_port()
    assert core.fdb_changes() == (False, [])            # no journal kept: nothing
    core.journal_ports({a, b})
    assert core.fdb_changes() == (True, [])             # begun: read the table whole once
    core.inject(a, [frame(BROADCAST, mac(1)), frame(BROADCAST, mac(2))])
    core.forward_all()
    core.inject(c, [frame(BROADCAST, mac(4)), frame(BROADCAST, mac(1))])    # a move to c
    core.forward_all()
    core.set_time(5)
    core.inject(b, [frame(BROADCAST, mac(5))])
    core.forward_all()
    core.fdb_del(key_of(2))
    core.fdb_add(key_of(3), b)
    core.fdb_del(key_of(4))                             # on c, whose changes are not kept
    core.set_time(12)                                   # mac(1) ages on c, unseen
    core.fdb_entries()
    core.set_time(16)                                   # mac(5) ages on b
    core.fdb_entries()
    assert core.fdb_changes() == (False, [(key_of(1), a), (key_of(2), a), (key_of(1), c),
                                          (key_of(5), b), (key_of(2), None), (key_of(3), b),
                                          (key_of(5), None)])
    assert core.fdb_changes() == (False, [])
    core.journal_ports({a, b, c})
    assert core.fdb_changes() == (True, [])             # c is new: read it all
    core.journal_ports(())
    core.fdb_del(key_of(3))
    assert core.fdb_changes() == (False, [])


def test_a_journal_that_overflows_says_so_and_keeps_nothing_more():
    core = SwitchCore(capacity=20000, manual_clock=True)
    a = core.add_port(rx_slots=16384)
    core.add_port()
    core.journal_ports({a})
    core.fdb_changes()
    core.inject(a, [frame(BROADCAST, mac(i)) for i in range(10000)])
    core.forward_all()
    lost, changes = core.fdb_changes()
    assert lost and len(changes) == 8192
    assert core.fdb_changes() == (False, [])


def test_frames_seen_elsewhere_keep_an_entry_from_ageing():
    core = SwitchCore(capacity=64, manual_clock=True, ageing=10)
    a, b = core.add_port(), core.add_port()
    core.inject(a, [frame(BROADCAST, mac(1)), frame(BROADCAST, mac(2))])
    core.forward_all()
    core.fdb_add(key_of(3), a)
    core.set_time(8)
    # mac(1) seen on a; mac(2) claimed on the wrong port; statics and strangers ignored
    assert core.fdb_seen(a, [key_of(1), key_of(3), key_of(9)]) == 1
    assert core.fdb_seen(b, [key_of(2)]) == 0
    core.set_time(12)
    assert sorted(k for k, *_ in core.fdb_entries()) == [key_of(1), key_of(3)]
