"""The daemon's limits (vale.limits): a request over one gets a clear error naming the valed
option and changes nothing; a saved configuration over a limit lowered since runs within
it, logged; a capture client that reads slowly is held to its bytes. No root needed:
nothing here attaches an interface (the limit is checked before the interface is looked
up, which the names below, of interfaces that do not exist, would fail)."""

from __future__ import annotations

import asyncio
import copy
import logging

import pytest

from tests.conftest import start_valed, stop_valed
from tests.frames import BROADCAST, frame, mac
from vale.api import Api
from vale.capture import RECORD_OVERHEAD, CaptureBudget, CaptureHub, Subscriber
from vale.limits import LIMITS, Limits
from vale.state import load_state
from vale.switch import Switch


def doc(*switches: str, **settings) -> dict:
    return {"version": 1, "interfaces": {}, "switches": {
        name: {"settings": dict(settings), "ports": {}, "fdb": {}, "mirrors": {}}
        for name in switches}}


@pytest.fixture
def make_api():
    made = []

    def make(limits: Limits, *switches: str, **settings) -> Api:
        api = Api(limits=limits)
        api.restore(load_state(doc(*switches, **settings)))
        made.append(api)
        return api
    yield make
    for api in made:
        api.shutdown()


def refused(api: Api, op: str, args: dict, *words: str) -> None:
    """The request is refused with a message holding `words`, and changes nothing."""
    before = copy.deepcopy(api.desired)
    live = {name: (sw.stats()["settings"], sw.stats()["fdb"]["capacity"])
            for name, sw in api.switches.items()}
    reply = api.handle({"op": op, "args": args})
    assert reply["ok"] is False and reply["error"]["code"] == "invalid", reply
    assert all(word in reply["error"]["message"] for word in words), reply
    assert api.desired == before
    assert {name: (sw.stats()["settings"], sw.stats()["fdb"]["capacity"])
            for name, sw in api.switches.items()} == live


def test_an_fdb_capacity_over_the_limit_is_refused_and_changes_nothing(make_api):
    api = make_api(Limits(fdb_capacity=4096), "vale1")
    refused(api, "set", {"target": "vale1", "settings": {"fdb_capacity": 4097, "batch": 8}},
            "fdb_capacity=4097", "4096", "--max-fdb-capacity")
    refused(api, "set", {"target": "vale1", "settings": {"fdb_capacity": 16777216}},
            "--max-fdb-capacity")
    assert api.handle({"op": "set", "args": {"target": "vale1",
                                             "settings": {"fdb_capacity": 4096}}})["ok"]
    assert api.switches["vale1"].stats()["fdb"]["capacity"] == 4096


def test_the_default_fdb_limit_refuses_what_the_issue_asked():
    """fdb_capacity=16777216 added 1.3 GiB and stalled forwarding for a second."""
    with pytest.raises(ValueError, match="max-fdb-capacity"):
        Limits().check_switch_settings({"fdb_capacity": 16777216})
    Limits().check_switch_settings({"fdb_capacity": 65536})


def test_a_switch_over_the_limit_is_refused_before_anything_is_made(make_api):
    api = make_api(Limits(switches=2), "vale1", "vale2")
    refused(api, "attach", {"port": "vale3:vtnothere0"}, "at most 2 switches",
            "--max-switches")
    refused(api, "create", {"name": "vtlimit0", "kind": "tap", "switch": "vale3"},
            "--max-switches")
    assert set(api.switches) == {"vale1", "vale2"}
    # a port on a switch that exists is no new switch: on to the next check
    reply = api.handle({"op": "attach", "args": {"port": "vale1:vtnothere0"}})
    assert reply["error"]["code"] == "no_such_interface"


def test_rx_frames_over_the_limit_are_refused_at_attach_and_create(make_api):
    api = make_api(Limits(rx_frames=512), "vale1")
    for op, args in [("attach", {"port": "vale1:vtnothere0"}),
                     ("create", {"name": "vtlimit0", "kind": "veth", "switch": "vale1"})]:
        refused(api, op, {**args, "settings": {"rx_frames": 513}}, "rx_frames=513", "512",
                "--max-rx-frames")
    assert not any(name.startswith("vtlimit") for name in _interfaces())


def test_the_default_ring_limit_refuses_what_the_issue_asked():
    """rx_frames=4096 pinned ~275 MiB of kernel memory per port."""
    with pytest.raises(ValueError, match="max-rx-frames"):
        Limits().check_port_settings({"rx_frames": 4096})


def _interfaces() -> list[str]:
    import os
    return os.listdir("/sys/class/net")


def test_saved_settings_over_a_lowered_limit_run_within_it_logged(make_api, caplog):
    with caplog.at_level(logging.ERROR):
        api = make_api(Limits(switches=2, fdb_capacity=1000), "vale1", "vale2", "vale3",
                       fdb_capacity=5000)
    assert set(api.switches) == {"vale1", "vale2"}          # in saved order
    assert all(sw.stats()["fdb"]["capacity"] == 1000 for sw in api.switches.values())
    assert api.desired.switches["vale1"].settings == {"fdb_capacity": 5000}   # kept
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "vale3" in logged and "--max-switches" in logged
    assert "--max-fdb-capacity" in logged
    # the switch not running is still configured, and said to be so
    assert api.handle({"op": "info", "args": {"port": "vale3"}})["ok"]
    assert api.handle({"op": "stats", "args": {"target": "vale3"}})["error"]["code"] == \
        "not_found"
    assert api.handle({"op": "set", "args": {"target": "vale3",
                                             "settings": {"batch": 8}}})["ok"]
    assert api.desired.switches["vale3"].settings["batch"] == 8


@pytest.mark.parametrize("limit", LIMITS, ids=lambda limit: limit.option)
def test_each_limit_is_a_valed_option_checked_at_start(tmp_path, limit):
    import subprocess
    import sys

    from tests.conftest import ROOT
    result = subprocess.run([sys.executable, "-m", "vale.daemon", "--foreground",
                             "--socket", str(tmp_path / "v.sock"), f"--{limit.option}",
                             str(limit.low - 1)], capture_output=True, text=True, timeout=30,
                            cwd=ROOT)
    assert result.returncode == 2 and f"--{limit.option} takes" in result.stderr


def test_valed_takes_its_limits_from_its_options(tmp_path):
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         extra=("--max-switches", "1", "--max-rx-frames", "64"))
    try:
        reply = _raw(daemon, {"op": "attach", "args": {"port": "vale0:vtnothere0",
                                                       "settings": {"rx_frames": 65}}})
        assert "--max-rx-frames" in reply["error"]["message"]
    finally:
        stop_valed(daemon)


def _raw(daemon, request: dict) -> dict:
    import json
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(daemon.socket)
        s.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(s.makefile("rb").readline())


# -- captures ---------------------------------------------------------------------------

FRAME = frame(BROADCAST, mac(1), size=1500)
SIZE = len(FRAME) + RECORD_OVERHEAD


def test_a_capture_client_that_does_not_read_is_held_to_its_bytes_and_loses_counted():
    """Frames keep coming, nobody reads: what is queued stays within the client's bytes
    and the total, for each client, and every frame is either queued or counted lost."""
    sw = Switch("vale0", manual_clock=True)
    for name in ("a", "b"):
        sw.add_port(name)
    budget = CaptureBudget(per_client=40 * SIZE, total=60 * SIZE)

    async def run() -> tuple[list[Subscriber], int]:
        hub = CaptureHub(sw, budget)
        subs = [Subscriber("a", rx=True, tx=False) for _ in range(3)]
        for sub in subs:
            hub.add(sub)
        sent = 0
        for _ in range(20):
            sent += sw.inject("a", [FRAME] * 16)
            sw.forward("a")
            sw.drain("b")
            await asyncio.sleep(0.03)
            assert all(sub.queued <= budget.per_client for sub in subs)
            assert budget.used == sum(sub.queued for sub in subs) <= budget.total
        await asyncio.sleep(0.05)
        for sub in subs:
            assert len(sub.frames) + sub.lost == sent
            assert sub.queued == len(sub.frames) * SIZE
        # the total ran out first (3 x 40 > 60); each frame went to every client with room
        assert [len(s.frames) for s in subs] == [20, 20, 20]
        # every copy lost is counted on the port, for metrics (capture_lost)
        assert sw.stats()["ports"]["a"]["capture_lost"] == sum(s.lost for s in subs) > 0
        for sub in subs:
            hub.remove(sub)
        return subs, sent

    subs, sent = asyncio.run(run())
    assert sent == 320
    assert budget.used == 0 and all(sub.queued == 0 for sub in subs)


def test_capture_losses_of_the_ring_and_of_valed_are_exported_per_port(tmp_path):
    """vale_port_capture_lost_packets_total: copies the capture ring had no room for
    (nobody drains it here) and those a client's queue in valed had none for."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from vale.metrics import registry_for
    from vale.state import StateFile

    sw = Switch("vale0", manual_clock=True)
    for name in ("a", "b"):
        sw.add_port(name)
    sw.set_capture("a", rx=True, tx=False)
    sent = 0
    while sent < 2 * 8192:                  # twice what the ring holds (CAPTURE_SLOTS)
        sent += sw.inject("a", [frame(BROADCAST, mac(1))] * 64)
        sw.forward("a")
        sw.drain("b")
    ring_lost, _ = sw.capture_lost("a")
    assert ring_lost > 0
    for _ in range(3):
        sw.capture_queue_lost("a")
    api = Api(StateFile(str(tmp_path)))
    api.switches["vale0"] = sw
    text = generate_latest(registry_for(api)).decode()
    lost = {s.labels["port"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "vale_port_capture_lost_packets" for s in family.samples}
    assert lost == {"a": ring_lost + 3, "b": 0}


def test_a_client_that_reads_frees_its_bytes():
    sub = Subscriber("a", rx=True, tx=False)
    budget = CaptureBudget(per_client=2 * SIZE, total=10 * SIZE)
    for stamp in range(3):
        if budget.take(sub, SIZE):
            sub.frames.append((stamp, len(FRAME), "rx", FRAME))
        else:
            sub.lost += 1
    assert (len(sub.frames), sub.lost, budget.used) == (2, 1, 2 * SIZE)
    assert sub.pop(budget)[0] == 0
    assert budget.take(sub, SIZE) and budget.used == 2 * SIZE


def test_operations_md_lists_each_limit_with_its_default():
    from tests.conftest import ROOT
    page = (ROOT / "docs" / "operations.md").read_text()
    for limit in LIMITS:
        assert f"| `--{limit.option} N` | {limit.default} |" in page, limit.option


def test_a_port_past_1024_is_refused_and_the_switch_goes_on():
    sw = Switch("vale0")
    for k in range(1024):
        sw.add_port(f"p{k}")
    with pytest.raises(ValueError, match="all 1024 ports in use"):
        sw.add_port("p1024")
    assert len(sw.ports()) == 1024 and "p1024" not in sw.ports()
    sw.inject("p0", [frame(BROADCAST, mac(1))])
    assert sw.forward_all() == 1 and len(sw.drain("p1023")) == 1     # flooded to all
    sw.remove_port("p5")
    assert sw.add_port("p1024") == 5                                 # its index is free
