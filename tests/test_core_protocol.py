"""Both cores, the Cython one and the reference model, offer every method of
vale.core.CoreProtocol with the parameters it names (by name, kind and default where
inspect can read the signature)."""

from __future__ import annotations

import inspect

import pytest

from tests.model import ModelCore
from vale._fastpath import SwitchCore
from vale.core import CoreProtocol

MEMBERS = [name for name, value in vars(CoreProtocol).items()
           if (callable(value) or isinstance(value, property))
           and (not name.startswith("_") or name == "__init__")]


def test_the_protocol_names_what_switch_needs():
    assert {"add_port", "set_port", "configure", "snapshot", "now", "__init__"} <= set(MEMBERS)


@pytest.mark.parametrize("core", [SwitchCore, ModelCore], ids=["cython", "model"])
@pytest.mark.parametrize("name", MEMBERS)
def test_each_core_has_each_method_of_the_protocol(core, name):
    wanted = vars(CoreProtocol)[name]
    assert hasattr(core, name), f"{core.__name__} lacks {name}"
    if isinstance(wanted, property):
        return
    if name == "__init__" and core is SwitchCore:   # a cdef class: inspect cannot read it
        core(capacity=1, ageing=0, batch=1, manual_clock=True, move_limit=0, move_window=0,
             ban=0)
        return
    have = getattr(core, name)
    params = inspect.signature(have).parameters
    for param in inspect.signature(wanted).parameters.values():
        if param.name == "self":
            continue
        assert param.name in params, f"{core.__name__}.{name} takes no {param.name}"
        assert params[param.name].kind == param.kind, f"{core.__name__}.{name}({param.name})"
