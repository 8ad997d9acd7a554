"""Many ports: several attached in one request (all or none), and rx_frames_idle's small
rings that grow at a burst. Root and namespaces; skipped otherwise. The 1,024-port
figures are bench/scale.py's."""

from __future__ import annotations

from tests.integration.conftest import sh


def test_several_ports_attach_in_one_request(valed, make_host):
    hosts = [make_host(i) for i in (1, 2, 3)]
    valed.ctl("attach", *(f"vale0:{h.port}" for h in hosts), "--rx-frames-idle", "15")
    assert {row["port"] for row in valed("list")} == {h.port for h in hosts}
    info = valed("info", port=f"vale0:{hosts[0].port}")["settings"]
    assert (info["rx_frames"], info["rx_frames_max"]) == (15, 270)
    assert hosts[0].ping(hosts[1]) and hosts[1].ping(hosts[2])


def test_an_attach_of_several_with_one_bad_attaches_none(valed, make_host):
    a, b = make_host(1), make_host(2)
    result = valed.ctl("attach", f"vale0:{a.port}", "vale0:vt0nosuch", f"vale0:{b.port}",
                       check=False)
    assert result.returncode != 0 and "vt0nosuch" in result.stderr
    assert valed("list") == []
    sh("ip", "link", "set", a.port, "down")
    valed.ctl("attach", f"vale0:{a.port}", f"vale0:{b.port}")     # and they are free
