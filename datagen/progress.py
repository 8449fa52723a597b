"""Progress of long work, on a terminal or in a log file.

On a terminal the line redraws in place (``\\r``); anywhere else (a batch job's log, a pipe) a
full line is printed at most every ``every`` seconds, so a SLURM log shows how far a run is
without thousands of lines. Both show done/total, the rate and the time left.
"""

from __future__ import annotations

import shutil
import sys
import time


MIN_RATE_SECONDS = 0.5  # a rate over less time than this says nothing (the first item of a lazy loop)


def format_duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``update(n)`` as work finishes, ``message(text)`` for a line in between, ``close()`` at the end."""

    def __init__(self, total: int, label: str, unit: str = "samples", stream=None, tty: bool | None = None,
                 every: float = 30.0, clock=time.monotonic):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every, self.clock = every, clock
        self.done = 0
        self.skipped = 0  # counted as done, not in the rate
        self.started = clock()
        self._last_line = None  # when the last log line was printed (not on a terminal)
        self._drawn = False  # a terminal line is showing and needs clearing before a message

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.tty:
            self._draw()
        elif self._last_line is None or self.clock() - self._last_line >= self.every or self.done >= self.total:
            self._last_line = self.clock()
            self._write(self.status() + "\n")

    def skip(self, n: int) -> None:
        """Work found already done (a resumed run): counted, but not in the rate."""
        self.done += n
        self.skipped += n

    def status(self) -> str:
        elapsed = self.clock() - self.started
        fresh = self.done - self.skipped
        rate = fresh / elapsed if elapsed > 0 else 0.0
        percent = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.label}: {self.done}/{self.total} {self.unit} ({percent:.0f}%)"
        if fresh > 0 and rate > 0 and elapsed >= MIN_RATE_SECONDS:
            text += f", {rate:.1f} {self.unit}/s"
            if self.done < self.total:
                text += f", {format_duration((self.total - self.done) / rate)} left"
        return text

    def message(self, text: str) -> None:
        if self._drawn:
            self._write("\r\033[K")
            self._drawn = False
        self._write(text + "\n")
        if self.tty and self.done:
            self._draw()

    def close(self) -> None:
        if self._drawn:
            self._write("\n")
            self._drawn = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _draw(self) -> None:
        status = self.status()
        width = shutil.get_terminal_size((80, 24)).columns
        bar_width = max(0, min(30, width - len(status) - 4))
        filled = int(bar_width * self.done / self.total) if self.total else bar_width
        bar = f" [{'#' * filled}{'-' * (bar_width - filled)}]" if bar_width >= 10 else ""
        self._write(f"\r{status}{bar}"[: width + 1] + "\033[K")
        self._drawn = True

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
