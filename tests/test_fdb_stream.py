"""A large MAC table read a page at a time: fdb_stream's pages, valectl fdb printing them as
they come, a refused stream, and a client that stops reading while others are served. The
table is filled by a program on a memif port sending from thousands of source MACs (no
root needed: a memif port is a Unix socket)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from cli.pkttools import udp_frame
from tests.conftest import ROOT
from vale.app import open_port
from vale.client import ClientError, open_stream, stream

MACS = 5000                     # over two of the core's chunks (FDB_CHUNK, 2048 slots)
DST = "02:ee:00:00:00:01"       # unknown: flooded to no other port


def source(k: int) -> str:
    return f"02:aa:00:{k >> 16 & 0xff:02x}:{k >> 8 & 0xff:02x}:{k & 0xff:02x}"


@pytest.fixture
def filled(valed, tmp_path):
    """valed with vale0:app1 (memif) having learned MACS source MACs."""
    sock = str(tmp_path / "app1.sock")
    valed("create", name="app1", kind="memif", path=sock)
    frames = [udp_frame(60, src=source(k), dst=DST) for k in range(MACS)]
    with open_port(sock) as port:
        sent = 0
        deadline = time.monotonic() + 30
        while sent < MACS and time.monotonic() < deadline:
            sent += port.send(frames[sent:sent + 256])
        while valed("stats", target="vale0")[0]["fdb"]["entries"] < MACS:
            assert time.monotonic() < deadline, "the MACs were not all learned"
            time.sleep(0.05)
    return valed


def valectl(valed, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.valectl", "--socket", valed.socket, *argv],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_table_comes_in_pages_with_every_entry_once(filled):
    pages = list(stream("fdb_stream", {"switch": "vale0"}, path=filled.socket))
    entries = [e for page in pages for e in page]
    assert len(pages) >= 3
    assert sorted(e["mac"] for e in entries) == sorted(source(k) for k in range(MACS))
    assert {(e["port"], e["vlan"], e["static"]) for e in entries} == {("app1", 0, False)}
    def without_age(listed: list[dict]) -> list[tuple]:
        return sorted((e["vlan"], e["mac"], e["port"], e["static"]) for e in listed)

    assert without_age(entries) == without_age(filled("fdb_show", switch="vale0"))


def test_a_stream_of_one_port_or_vlan_has_only_theirs(filled):
    assert sum(len(p) for p in stream("fdb_stream", {"switch": "vale0", "port": "app1"},
                                      path=filled.socket)) == MACS
    assert list(stream("fdb_stream", {"switch": "vale0", "vlan": 7},
                       path=filled.socket)) == []


def test_valectl_fdb_prints_every_entry_and_json_too(filled):
    out = valectl(filled, "fdb", "vale0")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["VLAN", "MAC", "PORT", "TYPE", "AGE(s)"]
    assert len(lines) == MACS + 1
    assert {line.split()[1] for line in lines[1:]} == {source(k) for k in range(MACS)}
    shown = valectl(filled, "fdb", "vale0", "--json")
    assert len(json.loads(shown.stdout)) == MACS and not shown.stderr


def test_a_refused_stream_is_one_error_and_the_daemon_goes_on(filled):
    for args, code in (({"switch": "vale9"}, "not_found"),
                       ({"switch": "vale0", "vlan": 5000}, "invalid"),
                       ({"switch": "vale0", "port": "nope"}, "not_found"),
                       ({}, "bad_request")):
        with pytest.raises(ClientError) as refused:
            list(stream("fdb_stream", args, path=filled.socket))
        assert refused.value.code == code, args
    out = valectl(filled, "fdb", "vale9")
    assert out.returncode == 1 and out.stdout == "" and "vale9" in out.stderr
    assert filled("version")["api"] == 1


def test_a_client_that_stops_reading_holds_up_no_one(filled):
    stalled = open_stream("fdb_stream", {"switch": "vale0"}, path=filled.socket)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        time.sleep(0.5)                         # valed has filled what the socket holds
        start = time.monotonic()
        assert filled("stats", target="vale0")[0]["fdb"]["entries"] == MACS
        assert time.monotonic() - start < 2
    finally:
        stalled.close()
    assert sum(len(p) for p in stream("fdb_stream", {"switch": "vale0"},
                                      path=filled.socket)) == MACS
