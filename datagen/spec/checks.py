"""Validation helpers of job specs: errors that say the file, the line and the dotted key, e.g.::

    jobs/bad.toml: line 14: sampling.pose.yaw_rnge_deg: unknown key (did you mean yaw_range_deg?)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError


@dataclass
class Context:
    source: str
    lines: dict


class Where:
    """Formats errors as 'file: line N: dotted.key: message'."""

    def __init__(self, ctx: Context, prefix: str):
        self.ctx, self.prefix = ctx, prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> SpecError:
        dotted = self.key(name) if name else self.prefix
        line = self.ctx.lines.get(dotted) or self.ctx.lines.get(self.prefix)
        at = f"line {line}: " if line else ""
        return SpecError(f"{self.ctx.source}: {at}{dotted}: {message}")


def require(ok: bool, where: Where, name: str, message: str) -> None:
    if not ok:
        raise where.error(name, message)


def check_range(value, where, name, lo, hi):
    require(lo <= value[0] <= value[1] <= hi, where, name, f"must be [low, high] with {lo} <= low <= high <= {hi}, got {list(value)}")
