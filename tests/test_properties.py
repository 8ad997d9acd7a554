"""Random operation sequences through the Cython core and the reference model: the same
frames must come out of every port, and the FDB and every counter must agree."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frames import frame, mac, tagged
from tests.model import ModelCore
from vale._fastpath import SwitchCore

# A small pool, so MACs repeat, move and collide with ports' limits.
MACS = [mac(i) for i in range(1, 11)] + ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb",
                                        "00:00:00:00:00:00", "01:80:c2:00:00:00"]
SLOT_SIZES = [64, 128, 2048]
MAX_LEN = 2048 + 64

port_slot = st.integers(0, 5)          # index into the switch's port list (modulo its length)

# VLAN tags a frame may carry: none, priority (VLAN 0), VLANs 1-3, the reserved 4095, and
# two tags (802.1ad outside 802.1Q).
TAGS = [(), (), (), ((0x8100, 0),), ((0x8100, 1),), ((0x8100, 0x2002),), ((0x8100, 3),),
        ((0x8100, 4095),), ((0x88A8, 1), (0x8100, 2))]
VLAN_SETTINGS = [("none", None), (("access", 1), None), (("access", 2), None),
                 (("trunk", [1, 2]), None), (("trunk", [2]), 1), (("trunk", []), 3),
                 (("trunk", []), 0), (("access", 4095), None)]

frames_st = st.lists(
    st.tuples(st.sampled_from(MACS), st.sampled_from(MACS),
              st.one_of(st.integers(0, 20), st.integers(0, 200), st.integers(0, MAX_LEN)),
              st.sampled_from(TAGS)),
    min_size=1, max_size=40)

inject_op = st.tuples(st.just("inject"), port_slot, frames_st)
time_op = st.tuples(st.just("time"), st.sampled_from([0, 0.001, 1, 5, 9.999, 10, 59, 61, 299, 300]))
forward_all_op = st.tuples(st.just("forward_all"))

ops = st.one_of(
    inject_op, inject_op, forward_all_op, forward_all_op, time_op, time_op,
    st.tuples(st.just("forward"), port_slot),
    st.tuples(st.just("drain"), port_slot),
    st.tuples(st.just("add_port"), st.sampled_from([1, 2, 4, 16]), st.sampled_from(SLOT_SIZES)),
    st.tuples(st.just("remove_port"), port_slot),
    st.tuples(st.just("fdb_add"), st.integers(0, 9), port_slot),
    st.tuples(st.just("fdb_del"), st.integers(0, 9)),
    st.tuples(st.just("fdb_flush"), st.one_of(st.none(), port_slot), st.booleans()),
    st.tuples(st.just("set_port"), port_slot, st.booleans(), st.booleans(),
              st.sampled_from([0, 1, 2, 3])),
    st.tuples(st.just("capacity"), st.integers(1, 12)),
    st.tuples(st.just("vlan"), port_slot, st.sampled_from(VLAN_SETTINGS)),
    st.tuples(st.just("configure"), st.sampled_from([0, 5, 60, 300]),
              st.sampled_from([1, 2, 7, 256]), st.sampled_from([0, 1, 2, 4])),
    st.tuples(st.just("guard"), port_slot, st.one_of(st.none(), st.sets(st.integers(0, 9))),
              st.one_of(st.none(), st.integers(0, 3)),
              st.sampled_from([None, "forward", "drop", "guard"])),
)
GUARD_INFO = ("allowed_macs", "sticky_macs", "sticky", "bpdu", "bpdu_blocked")


def key(m: str) -> int:
    from vale.names import mac_to_key
    return mac_to_key(m)


def apply(core, op, ports: list[int], tag: int):
    """Run one operation; returns what the core answered (or the error type)."""
    kind = op[0]
    pick = (lambda i: ports[i % len(ports)]) if ports else None
    try:
        if kind == "inject" and ports:
            return core.inject(pick(op[1]), [tagged(frame(d, s, n, tag + i), *tags)
                                             for i, (d, s, n, tags) in enumerate(op[2])])
        if kind == "forward" and ports:
            return core.forward(pick(op[1]))
        if kind == "forward_all":
            return core.forward_all()
        if kind == "drain" and ports:
            return core.drain(pick(op[1]))
        if kind == "time":
            return core.set_time(core.now + op[1])
        if kind == "add_port":
            return core.add_port(rx_slots=op[1], tx_slots=op[1], slot_size=op[2])
        if kind == "remove_port" and ports:
            return core.remove_port(pick(op[1]))
        if kind == "fdb_add" and ports:
            return core.fdb_add(key(MACS[op[1]]), pick(op[2]))
        if kind == "fdb_del":
            return core.fdb_del(key(MACS[op[1]]))
        if kind == "fdb_flush":
            return core.fdb_flush(None if op[1] is None or not ports else pick(op[1]),
                                  statics=op[2])
        if kind == "set_port" and ports:
            return core.set_port(pick(op[1]), learning=op[2], flood=op[3], learn_limit=op[4])
        if kind == "vlan" and ports:
            return core.set_port(pick(op[1]), vlan=op[2][0], native=op[2][1])
        if kind == "guard" and ports:
            return core.set_port(pick(op[1]), allowed_macs=None if op[2] is None else
                                 [key(MACS[i]) for i in op[2]], sticky=op[3], bpdu=op[4])
        if kind == "capacity":
            return core.set_capacity(op[1])
        if kind == "configure":
            return core.configure(ageing=op[1], batch=op[2], move_limit=op[3], move_window=10,
                                  ban=30)
    except ValueError as exc:
        return ValueError, "static" in str(exc)
    return None


def port_list(core) -> list[int]:
    return sorted(core.snapshot()["ports"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=10, max_size=80), st.sampled_from([1, 3, 8, 256]),
       st.sampled_from([3, 5, 8, 64]))
def test_cython_core_matches_the_model(sequence, batch, capacity):
    fast = SwitchCore(capacity=capacity, batch=batch, manual_clock=True, move_limit=2, ageing=10,
                      move_window=10, ban=30)
    model = ModelCore(capacity=capacity, batch=batch, manual_clock=True, move_limit=2, ageing=10,
                      move_window=10, ban=30)
    for i in range(3):
        assert fast.add_port(rx_slots=8, tx_slots=8, slot_size=SLOT_SIZES[i]) == \
            model.add_port(rx_slots=8, tx_slots=8, slot_size=SLOT_SIZES[i])
    for step, op in enumerate(sequence):
        ports = port_list(model)
        assert port_list(fast) == ports
        got, want = apply(fast, op, ports, step * 100), apply(model, op, ports, step * 100)
        assert got == want, f"step {step}: {op}"
        assert sorted(fast.fdb_entries()) == sorted(model.fdb_entries()), f"step {step}: {op}"
    fast.forward_all()
    model.forward_all()
    for p in port_list(model):
        assert fast.drain(p) == model.drain(p)
        got, want = fast.port_info(p), model.port_info(p)
        assert {k: got[k] for k in GUARD_INFO} == {k: want[k] for k in GUARD_INFO}
    assert fast.snapshot() == model.snapshot()


# Moves, damping and bans, which random traffic above rarely reaches: few MACs, every
# frame well-formed, many ports sending them, the clock stepping inside and across windows.
move_op = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 3), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("time"), st.sampled_from([0.001, 0.5, 3, 10, 31])),
    st.tuples(st.just("guard"), st.integers(0, 3), st.sets(st.integers(0, 2)), st.integers(0, 2)),
    st.tuples(st.just("remove_add"), st.integers(0, 3)),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(move_op, min_size=5, max_size=60), st.integers(1, 3))
def test_moves_and_bans_match_the_model(sequence, move_limit):
    cores = [core(manual_clock=True, move_limit=move_limit, move_window=10, ban=30)
             for core in (SwitchCore, ModelCore)]
    for core in cores:
        for _ in range(4):
            core.add_port(rx_slots=64, tx_slots=64)
    for step, op in enumerate(sequence):
        for core in cores:
            ports = sorted(core.snapshot()["ports"])
            if op[0] == "send":
                src = ports[op[1] % len(ports)]
                core.inject(src, [frame(MACS[op[3] % 3] if op[3] < 3 else "ff:ff:ff:ff:ff:ff",
                                        MACS[op[2]], 60, step)])
                core.forward_all()
            elif op[0] == "time":
                core.set_time(core.now + op[1])
            elif op[0] == "guard":
                core.set_port(ports[op[1] % len(ports)],
                              allowed_macs=[key(MACS[i]) for i in op[2]], sticky=op[3])
            else:
                core.remove_port(ports[op[1] % len(ports)])
                core.add_port(rx_slots=64, tx_slots=64)
        fast, model = cores
        assert sorted(fast.fdb_entries()) == sorted(model.fdb_entries()), f"step {step}: {op}"
    for p in sorted(model.snapshot()["ports"]):
        assert fast.drain(p) == model.drain(p)
    assert fast.snapshot() == model.snapshot()
