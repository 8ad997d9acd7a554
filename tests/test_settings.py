"""The settings table: what it takes and refuses, that the core starts at its defaults,
that Switch maps it, and that docs/operations.md shows it as rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from vale import settings
from vale.api import Api
from vale.settings import BY_NAME, SETTINGS, SettingError
from vale.state import Port, SwitchConfig
from vale.switch import Switch

ROOT = Path(__file__).resolve().parents[1]


def test_docs_operations_shows_the_table_as_rendered():
    page = (ROOT / "docs/operations.md").read_text()
    assert settings.with_table(page) == page, \
        "run: python -m vale.settings docs/operations.md"


def test_each_setting_once_with_its_help_and_a_default_it_takes():
    assert len(BY_NAME) == len(SETTINGS)
    for s in SETTINGS:
        assert s.help and s.scope in ("switch", "port", "attach", "both")
        assert s.parse(s.default) == s.default, s.name


def test_a_new_switch_and_its_ports_start_at_the_table_defaults():
    sw = Switch("vale0")
    snap = sw.stats()
    values = {**snap["settings"], "fdb_capacity": snap["fdb"]["capacity"], "cpus": sw.cpus}
    sw.add_port("a")
    port = sw.port_info("a")
    for s in SETTINGS:
        if s.scope == "switch":
            assert values[s.name] == s.default, s.name
        elif s.name != "offloads":          # in-memory ports keep headers off (tests)
            assert port.get(s.name, s.default) == s.default, s.name


@pytest.mark.parametrize("scope, raw, parsed", [
    ("switch", {"ageing": "120", "batch": "64", "cpus": "0,2-3"},
     {"ageing": 120.0, "batch": 64, "cpus": [0, 2, 3]}),
    ("switch", {"batch": 64.0, "busy_poll_us": 0, "cpus": "auto"},
     {"batch": 64, "busy_poll_us": 0, "cpus": "auto"}),
    ("port", {"learning": "off", "flood": True, "offloads": "yes", "learn_limit": "10"},
     {"learning": False, "flood": True, "offloads": True, "learn_limit": 10}),
    ("attach", {"rx_frames": 16}, {"rx_frames": 16}),
])
def test_values_as_typed_or_as_json(scope, raw, parsed):
    assert settings.parse(scope, raw) == parsed


@pytest.mark.parametrize("scope, raw, message", [
    ("switch", {"batch": 0}, "batch takes an integer from 1 to 1024"),
    ("switch", {"batch": 1.5}, "batch takes an integer"),           # not cut to 1
    ("switch", {"batch": True}, "batch takes an integer"),
    ("switch", {"ageing": "nan"}, "ageing takes a number of seconds"),
    ("switch", {"ageing": 1e8}, "ageing takes a number of seconds"),
    ("switch", {"busy_poll_us": 1_000_001}, "busy_poll_us"),
    ("switch", {"cpus": [0, 8192]}, "CPU numbers"),                 # a list is checked too
    ("port", {"learning": "maybe"}, "learning takes on or off"),
    ("port", {"rx_frames": 64}, "unknown setting 'rx_frames'"),     # at attach only
    ("attach", {"rx_frames": 15}, "rx_frames takes an integer from 16 to 4096"),
    ("attach", {"colour": 1}, "unknown setting 'colour'"),
])
def test_refused_values_name_the_setting(scope, raw, message):
    with pytest.raises(SettingError, match=message):
        settings.parse(scope, raw)


def test_a_refused_setting_is_an_invalid_reply_that_changes_nothing():
    api = Api()
    config = api.topo.desired.switches["vale1"] = SwitchConfig({"batch": 32})
    try:
        api.topo.live_switch("vale1")
        for bad in ({"batch": 1.5}, {"cpus": [8192]}, {"ageing": 64, "batch": 0}):
            reply = api.handle({"op": "set", "args": {"target": "vale1", "settings": bad}})
            assert reply["error"]["code"] == "invalid", reply
            assert config.settings == {"batch": 32}
            assert api.switches["vale1"].stats()["settings"]["ageing"] == 300
    finally:
        api.shutdown()


@pytest.mark.parametrize("text, canonical", [
    ("none", "none"), ("access:10", "access:10"), ("ACCESS:4094", "access:4094"),
    ("trunk:30,10,20,10", "trunk:10,20,30"), (" trunk:1 ", "trunk:1"),
])
def test_vlan_membership(text, canonical):
    assert settings.Vlan().parse("vlan", text) == canonical


@pytest.mark.parametrize("text", ["", "access", "access:", "access:0", "access:4095",
                                  "access:1,2", "trunk:", "trunk:1,x", "none:5", "hybrid:1",
                                  5, None])
def test_vlan_membership_refused(text):
    with pytest.raises(SettingError, match="vlan takes none, access:N or trunk"):
        settings.Vlan().parse("vlan", text)


def test_switch_takes_settings_by_their_names():
    sw = Switch("vale0", batch=32, busy_poll_us=0, cpus=[])
    assert sw.stats()["settings"]["batch"] == 32 and sw.cpus == []
    sw.add_port("a", offloads=True)
    assert sw.port_info("a")["offloads"] is True
    sw.set_port("a", offloads=False, learn_limit=5)
    info = sw.port_info("a")
    assert info["offloads"] is False and info["learn_limit"] == 5 and "vnet" not in info
    with pytest.raises(ValueError, match="unknown port setting"):
        sw.set_port("a", vnet=True)                     # the core's name is not a setting
    with pytest.raises(ValueError, match="unknown switch setting"):
        Switch("vale0", capacity=10)


def test_valectl_set_help_lists_every_setting():
    from click.testing import CliRunner

    from cli.valectl import main
    out = CliRunner().invoke(main, ["set", "--help"]).output
    for s in SETTINGS:
        assert s.name in out
    assert "integer 1-1024, default 256" in " ".join(out.split())


def test_a_refused_vlan_combination_is_an_invalid_reply_that_changes_nothing():
    """Each value parses, but together the core refuses them: nothing changes."""
    api = Api()
    config = api.topo.desired.switches["vale1"] = SwitchConfig(
        ports={"p": Port({"vlan": "trunk:10"})})
    try:
        sw = api.topo.live_switch("vale1")
        sw.add_port("p", vlan="trunk:10")
        for bad in ({"vlan": "access:10", "native": 11}, {"vlan": "none", "native": 3},
                    {"vlan": "access:4095"}, {"native": 4095}, {"storm_unknown": -1}):
            reply = api.handle({"op": "set", "args": {"target": "vale1:p", "settings": bad}})
            assert reply["error"]["code"] == "invalid", reply
            assert config.ports["p"].settings == {"vlan": "trunk:10"}
            assert sw.port_info("p")["vlan"] == "trunk:10"
    finally:
        api.shutdown()


def test_vlan_and_native_are_saved_as_the_pair_the_port_has():
    """A new vlan comes with its own native (0 unless given); a native alone keeps the
    vlan; a pair the core would refuse is refused now, also for a port that is missing."""
    api = Api()
    config = api.topo.desired.switches["vale1"] = SwitchConfig(
        ports={"p": Port({}), "gone": Port({"vlan": "access:10"})})
    try:
        sw = api.topo.live_switch("vale1")
        sw.add_port("p")

        def set_p(**changes):
            return api.handle({"op": "set", "args": {"target": "vale1:p",
                                                       "settings": changes}})
        assert set_p(vlan="trunk:10,20", native=10)["ok"]
        assert set_p(vlan="access:20")["ok"]
        assert config.ports["p"].settings == {"vlan": "access:20", "native": 0}
        assert (sw.port_info("p")["vlan"], sw.port_info("p")["native"]) == ("access:20", 0)
        assert set_p(vlan="trunk:10,20")["ok"] and set_p(native=30)["ok"]
        assert config.ports["p"].settings == {"vlan": "trunk:10,20", "native": 30}
        assert (sw.port_info("p")["vlan"], sw.port_info("p")["native"]) == ("trunk:10,20", 30)
        reply = api.handle({"op": "set", "args": {"target": "vale1:gone",
                                                   "settings": {"native": 20}}})
        assert reply["error"]["code"] == "invalid", reply
        assert config.ports["gone"].settings == {"vlan": "access:10"}
    finally:
        api.shutdown()
