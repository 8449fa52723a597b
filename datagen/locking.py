"""One run at a time per output folder: ``<out>/.datagen.lock``.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local file systems, on NFSv3+ and
on Lustre/GPFS) and holds the holder's host, process id, start time and command. A lock whose
holder ran on this host and no longer exists is stale (a run killed with SIGKILL, a crashed
node's rerun on the same host) and is taken over. A holder on another host cannot be checked
from here: the run is refused with the holder named, and the user deletes the lock file if that
run is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import DatagenError

LOCK = ".datagen.lock"


class OutputLocked(DatagenError):
    """Another run is writing the same output folder."""


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": " ".join(sys.argv)[:500]}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """``with OutputLock(folder):`` holds the folder for this process, or raises ``OutputLocked``."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK
        self.held = False

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None or not self._stale(holder):
                    raise OutputLocked(self._refusal(holder)) from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_holder(), f)
            self.held = True
            return
        raise OutputLocked(self._refusal(self._read()))

    def release(self) -> None:
        if self.held:
            holder = self._read()
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False

    def _read(self) -> dict | None:
        """The holder, or None while it is still being written (or is unreadable)."""
        for _ in range(20):
            try:
                return json.loads(self.path.read_text())
            except FileNotFoundError:
                return {}
            except (ValueError, OSError, UnicodeDecodeError):
                time.sleep(0.05)
        return None

    @staticmethod
    def _stale(holder: dict) -> bool:
        if not holder:
            return True  # removed meanwhile
        pid = holder.get("pid")
        pid = pid if isinstance(pid, int) else 0
        return holder.get("host") == socket.gethostname() and (pid <= 0 or not _alive(pid))

    def _refusal(self, holder: dict | None) -> str:
        who = (f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
               if holder else "a process that did not say who it is")
        return (f"{self.path.parent} is being written by another run ({who}); wait for it to end, or, if "
                f"that run is gone, delete {self.path}")

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
