"""One run at a time per output folder: ``<out>/.datagen.lock``.

The holder's host, process id, start time and command are written to a temporary file, which is
then hard-linked to the lock's name: the link is atomic and fails if the lock exists (on local
file systems, NFSv3+, Lustre and GPFS), so a lock is never seen half-written. A lock whose holder
ran on this host and no longer exists is stale (a run killed with SIGKILL, a crashed node's rerun
on the same host) and is taken over: renamed away (atomic, so of two runs taking over only one
gets it), checked to be the stale one, deleted. A holder on another host cannot be checked from
here: the run is refused with the holder named, and the user deletes the lock file if that run
is gone. An unreadable lock file (not datagen's format) older than a minute counts as stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from ..errors import DatagenError
from ..files import write_error

LOCK = ".datagen.lock"
UNREADABLE_STALE_SECONDS = 60.0


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
        mine = self.path.with_name(f"{LOCK}.{uuid.uuid4().hex[:8]}.tmp")  # not *.partial: runs delete those
        try:
            mine.write_text(json.dumps(_holder()))
            for _ in range(3):
                try:
                    os.link(mine, self.path)
                except FileExistsError:
                    holder = self._read()
                    if not self._stale(holder) or not self._take_over(holder):
                        raise OutputLocked(self._refusal(holder)) from None
                    continue
                self.held = True
                return
        except OSError as e:
            raise write_error(f"{self.path}: cannot create the lock file ({e.strerror or e})", e.errno) from None
        finally:
            with contextlib.suppress(OSError):
                mine.unlink()
        raise OutputLocked(self._refusal(self._read()))

    def release(self) -> None:
        if self.held:
            holder = self._read()
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False

    def _read(self) -> dict | None:
        """The holder; {} if the lock is gone; None if it is not readable as datagen's."""
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (ValueError, OSError, UnicodeDecodeError):
            return None
        return holder if isinstance(holder, dict) else None

    def _stale(self, holder: dict | None) -> bool:
        if holder is None:
            with contextlib.suppress(OSError):
                return time.time() - self.path.stat().st_mtime > UNREADABLE_STALE_SECONDS
            return True
        if not holder:
            return True  # removed meanwhile
        pid = holder.get("pid")
        pid = pid if isinstance(pid, int) else 0
        return holder.get("host") == socket.gethostname() and (pid <= 0 or not _alive(pid))

    def _take_over(self, stale: dict | None) -> bool:
        """Move the stale lock away; False if what was moved was not that one (another run's new lock)."""
        moved = self.path.with_name(f"{LOCK}.{uuid.uuid4().hex[:8]}.stale")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return True  # gone meanwhile: try to take it
        try:
            taken = json.loads(moved.read_text())
        except (ValueError, OSError, UnicodeDecodeError):
            taken = None
        if stale and taken != stale:  # another run took it over first: give its lock back
            with contextlib.suppress(OSError):
                os.link(moved, self.path)
            moved.unlink()
            return False
        moved.unlink()
        return True

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
