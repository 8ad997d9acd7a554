from __future__ import annotations

import pytest
from vale._fastpath import SwitchCore

from tests.model import ModelCore
from vale.switch import Switch


@pytest.fixture(params=[SwitchCore, ModelCore], ids=["cython", "model"])
def core_class(request):
    return request.param


@pytest.fixture
def make_switch(core_class):
    """Switches on a manual clock, on the Cython core and on the reference model."""
    def make(*ports: str, **settings) -> Switch:
        sw = Switch("vale0", manual_clock=True, core_class=core_class, **settings)
        for name in ports:
            sw.add_port(name)
        return sw
    return make
