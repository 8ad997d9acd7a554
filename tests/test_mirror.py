"""Port mirrors on the core: a transmit mirror shows exactly what its port was given."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, frame, mac
from vale._fastpath import SwitchCore


@pytest.mark.parametrize("port_floods", [False, True])
def test_a_transmit_mirror_follows_its_ports_flood_setting_not_its_own(port_floods):
    core = SwitchCore()
    src, port, mirror = core.add_port(), core.add_port(), core.add_port()
    core.set_port(port, flood=port_floods)
    core.set_port(mirror, flood=not port_floods)
    core.set_port(mirror, learning=False)
    core.set_mirror(port, tx_to=mirror)
    unknown = frame(mac(9), mac(1), tag=1)          # unknown unicast: floods
    broadcast = frame(BROADCAST, mac(1), tag=2)
    core.inject(src, [unknown, broadcast])
    core.forward(src)
    sent = core.drain(port)
    assert sent == ([unknown, broadcast] if port_floods else [broadcast])
    # The mirror's own flooding gets it the floods once more, after the copies.
    copies = core.drain(mirror)
    assert copies[:len(sent)] == sent
    assert copies[len(sent):] == ([broadcast] if port_floods else [unknown, broadcast])
