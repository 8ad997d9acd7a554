"""Storm control: per port and per flood class, at most so many frames a second go on to
be flooded (a bucket holds a tenth of a second's worth); known unicast is never limited."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, frame, mac
from vale.switch import Switch

MULTICAST = "01:00:5e:00:00:01"


@pytest.fixture
def sw():
    sw = Switch("vale0", manual_clock=True)
    for name in ("a", "b", "c"):
        sw.add_port(name, rx_slots=1024, tx_slots=1024)
    return sw


def storm_drops(sw, port):
    return sw.stats()["ports"][port]["drops"]["storm"]


def test_broadcasts_over_the_rate_are_dropped_and_counted(sw):
    sw.set_port("a", storm_broadcast=1000)          # a bucket of 100 frames
    sw.inject("a", [frame(BROADCAST, mac(1), tag=i) for i in range(300)])
    sw.forward_all()
    assert len(sw.drain("b")) == 100
    assert storm_drops(sw, "a") == 200
    sw.set_time(sw.now + 0.05)                      # 50 ms: 50 more frames' worth
    sw.inject("a", [frame(BROADCAST, mac(1), tag=i) for i in range(100)])
    sw.forward_all()
    assert len(sw.drain("b")) == 50
    assert storm_drops(sw, "a") == 250


def test_each_flood_class_has_its_own_bucket(sw):
    sw.set_port("a", storm_broadcast=10, storm_multicast=20, storm_unknown=30)
    frames = ([frame(BROADCAST, mac(1))] * 5 + [frame(MULTICAST, mac(1))] * 5
              + [frame(mac(9), mac(1))] * 5)
    sw.inject("a", frames)
    sw.forward_all()
    out = sw.drain("b")
    # A bucket holds at least one frame: 10/s, 20/s and 30/s each let 1, 2 and 3 through.
    assert [f[:6] for f in out].count(frame(BROADCAST, mac(1))[:6]) == 1
    assert [f[:6] for f in out].count(frame(MULTICAST, mac(1))[:6]) == 2
    assert [f[:6] for f in out].count(frame(mac(9), mac(1))[:6]) == 3
    assert storm_drops(sw, "a") == 9


def test_known_unicast_and_other_ports_are_not_limited(sw):
    sw.inject("b", [frame(BROADCAST, mac(2))])      # learn mac(2) on b
    sw.forward_all()
    sw.drain("a"), sw.drain("c")
    sw.set_port("a", storm_broadcast=10, storm_unknown=10)
    sw.inject("a", [frame(mac(2), mac(1), tag=i) for i in range(200)])
    sw.inject("c", [frame(BROADCAST, mac(3), tag=i) for i in range(200)])
    sw.forward_all()
    assert len(sw.drain("b")) == 400
    assert storm_drops(sw, "a") == 0 and storm_drops(sw, "c") == 0


def test_storm_rates_show_in_port_info_and_refuse_bad_values(sw):
    sw.set_port("a", storm_multicast=500)
    info = sw.port_info("a")
    assert (info["storm_broadcast"], info["storm_multicast"], info["storm_unknown"]) == \
        (0, 500, 0)
    from vale.settings import BY_NAME
    for bad in (-1, 10_000_001, "fast", 1.5):
        with pytest.raises(ValueError, match="storm_broadcast"):
            BY_NAME["storm_broadcast"].parse(bad)


def test_a_rate_under_ten_a_second_is_held_to_its_rate(sw):
    """A bucket holds at least one frame: a pause must earn the rate's worth of tokens,
    not a full bucket every tenth of a second."""
    sw.set_port("a", storm_broadcast=1)
    passed = 0
    for step in range(30):                          # one broadcast every 100 ms for 3 s
        sw.set_time(sw.now + 0.1)
        sw.inject("a", [frame(BROADCAST, mac(1), tag=step)])
        sw.forward_all()
        passed += len(sw.drain("b"))
    assert passed in (3, 4)                         # the full bucket, then 1 a second
