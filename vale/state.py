"""The desired configuration on disk: saved atomically on every change, read at start.

One JSON document (version 1): switches with their settings, ports with theirs, static
FDB entries, and the interfaces the daemon created. A file that cannot be read is moved
aside and the daemon starts empty rather than crash-looping.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("vale.state")

DEFAULT_STATE_DIR = "/var/lib/vale"
STATE_FILE = "state.json"
VERSION = 1


def empty() -> dict[str, Any]:
    return {"version": VERSION, "switches": {}, "interfaces": {}}


def new_switch(settings: dict[str, Any] | None = None,
               ports: dict[str, Any] | None = None) -> dict[str, Any]:
    """A switch's record in the document."""
    return {"settings": settings or {}, "ports": ports or {}, "fdb": {}, "mirrors": {}}


class StateFile:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / STATE_FILE

    def load(self) -> dict[str, Any]:
        """The saved document; an empty one when there is none or it is corrupt."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return empty()
        try:
            doc = json.loads(raw)
            _check(doc)
        except (ValueError, TypeError, KeyError) as exc:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.error("state file %s is unusable (%s): moved to %s; starting empty",
                      self.path, exc, aside)
            return empty()
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        """Write, fsync, rename over the old file, fsync the directory: after a crash the
        file is the old version or the new one, never a mix."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        data = json.dumps(doc, indent=1).encode()    # insertion order: ports keep theirs
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            try:
                view = memoryview(data)
                while view:                 # a short write (a full disk) is not the end
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _check(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} state document")
    if not isinstance(doc["switches"], dict) or not isinstance(doc["interfaces"], dict):
        raise ValueError("switches and interfaces must be objects")
    for name, sw in doc["switches"].items():
        if not isinstance(name, str) or not isinstance(sw, dict):
            raise ValueError("a switch must be an object")
        for key in ("settings", "ports", "fdb"):
            if not isinstance(sw[key], dict):
                raise ValueError(f"{name}.{key} must be an object")
