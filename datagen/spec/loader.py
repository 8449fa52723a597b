"""Loading job specs: a TOML file -> a validated, frozen ``JobSpec`` (the classes are in ``jobs``).

Every table of the file maps to one frozen dataclass of ``jobs``, with the defaults on its
fields. Unknown keys, wrong types and out-of-range values are rejected with the file,
the line and the dotted key, e.g.::

    jobs/bad.toml: line 14: sampling.pose.yaw_rnge_deg: unknown key (did you mean yaw_range_deg?)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import typing
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import SpecError
from .checks import Context, Where
from .jobs import JobSpec, Range


# --- loading

QUICKSTART = "quickstart"


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a job file. Raises ``SpecError`` naming the file, line and key.

    Relative paths in the file (``photoreal.library``, ``sampling.appearance.texture_libraries``,
    ``sampling.background.images_dir``, a model directory in ``model.name``) are relative to the
    job file's folder: the spec keeps them as written (a job's identity does not depend on where its
    folder is) and ``JobSpec.path`` resolves them against ``base_dir``, the folder's absolute path.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a job file (not UTF-8 text; a job file is TOML)") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read the job file ({e.strerror or e})") from None
    return dataclasses.replace(parse_spec(text, str(path)), base_dir=str(path.resolve().parent))


def default_spec_text() -> str:
    """The embedded default job (``jobs/quickstart.toml``)."""
    return resources.files("datagen").joinpath("jobs", "quickstart.toml").read_text()


def load_default_spec() -> JobSpec:
    return parse_spec(default_spec_text(), "<embedded quickstart.toml>")


def parse_spec(text: str, source: str = "<job>") -> JobSpec:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML: {e}") from None
    lines = _key_lines(text)
    spec = _build(JobSpec, table, "", Context(source, lines))
    return dataclasses.replace(spec, source_text=text, source_path=source)


def with_overrides(spec: JobSpec, **changes) -> JobSpec:
    """A copy of ``spec`` with top-level fields replaced (used by the CLI's --samples etc.)."""
    new = dataclasses.replace(spec, **changes)
    new.check(Where(Context(spec.source_path, {}), ""))
    return new


def with_settings(spec: JobSpec, settings) -> JobSpec:
    """``spec`` with dotted keys changed, checked as a job file's: ``settings`` are "KEY=VALUE"
    strings, e.g. "sampling.hair.probability=0.8" (VALUE in TOML; a bare word is a string)."""
    if not settings:
        return spec
    table = tomllib.loads(spec.source_text) if spec.source_text else {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {setting}: expected KEY=VALUE, e.g. sampling.hair.probability=0.8")
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value.strip()
        *tables, last = key.strip().split(".")
        node = table
        for name in tables:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {setting}: {name} is a key, not a table")
        node[last] = parsed
    changed = _build(JobSpec, table, "", Context(f"{spec.source_path or '<job>'} with --set", {}))
    return dataclasses.replace(changed, source_text=spec.source_text, source_path=spec.source_path,
                               base_dir=spec.base_dir)


def with_cluster(spec: JobSpec, **changes) -> JobSpec:
    """A copy of ``spec`` with ``[cluster]`` keys replaced (the CLI's --cluster, --jobs, --workers, --scheduler)."""
    cluster = dataclasses.replace(spec.cluster, **changes)
    cluster.check(Where(Context(spec.source_path, {}), "cluster"))
    return dataclasses.replace(spec, cluster=cluster)


def _build(cls, table: dict, prefix: str, ctx: Context):
    where = Where(ctx, prefix)
    if not isinstance(table, dict):
        raise where.error("", f"must be a table, got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("source_text", "source_path", "base_dir")}
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(known)})"
            raise where.error(key, f"unknown key{hint}")
    values = {}
    for name, f in known.items():
        if name in table:
            values[name] = _convert(hints[name], table[name], where, name, ctx)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.error(name, "is required")
    obj = cls(**values)
    obj_check = getattr(obj, "check", None)
    if obj_check:
        obj_check(where)
    return obj


def _convert(kind, value, where: Where, name: str, ctx: Context):
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where.key(name), ctx)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise where.error(name, f"expected true or false, got {_describe(value)}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise where.error(name, f"expected an integer, got {_describe(value)}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise where.error(name, f"expected a finite number, got {_describe(value)}")
            return float(value)
        raise where.error(name, f"expected a number, got {_describe(value)}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise where.error(name, f"expected a string, got {_describe(value)}")
    if kind == Range:
        if (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            if not all(math.isfinite(v) for v in value):
                raise where.error(name, f"expected [low, high] as two finite numbers, got {_describe(value)}")
            return (float(value[0]), float(value[1]))
        raise where.error(name, f"expected [low, high] as two numbers, got {_describe(value)}")
    if kind == typing.Tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise where.error(name, f"expected a list of strings, got {_describe(value)}")
    if kind == typing.Tuple[float, ...]:
        if (isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and math.isfinite(v) for v in value)):
            return tuple(float(v) for v in value)
        raise where.error(name, f"expected a list of numbers, got {_describe(value)}")
    raise TypeError(f"spec field {where.key(name)} has an unsupported type {kind}")  # a bug in this module


def _describe(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    return repr(value)


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\s]+?)\s*\]\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=")


def _key_lines(text: str) -> dict:
    """Map each dotted key (and table) to the 1-based line that defines it.

    tomllib reports no positions for valid documents, so this light scan of headers and
    ``key =`` lines is what lets errors say where a bad key is.
    """
    lines, table = {}, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _HEADER.match(line):
            table = ".".join(part.strip() for part in m.group(1).split("."))
            lines.setdefault(table, number)
        elif m := _ASSIGN.match(line):
            key = m.group(1)
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines
