"""The lookup stage is a switch setting: learning (VALE's) by default, or hub."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, frame, mac
from vale.switch import Switch


def test_a_hub_learns_nothing_and_floods_known_unicast_too():
    sw = Switch("vale0", manual_clock=True)
    for name in ("a", "b", "c"):
        sw.add_port(name)
    sw.inject("b", [frame(BROADCAST, mac(2))])
    sw.forward_all()
    assert [e.mac for e in sw.fdb_show()] == [mac(2)]
    sw.configure(lookup="hub")
    assert sw.fdb_show() == []                      # a change forgets what was learned
    for p in ("a", "b", "c"):
        sw.drain(p)
    f = frame(mac(2), mac(1))
    sw.inject("a", [f])
    sw.forward_all()
    assert sw.drain("b") == [f] and sw.drain("c") == [f]
    assert sw.fdb_show() == []
    assert sw.stats()["settings"]["lookup"] == "hub"


def test_an_unknown_lookup_is_refused():
    sw = Switch("vale0", manual_clock=True)
    from vale.settings import BY_NAME
    with pytest.raises(ValueError, match="learning or hub"):
        BY_NAME["lookup"].parse("magic")
    with pytest.raises(ValueError, match="lookup must be one of"):
        sw.configure(lookup="magic")
