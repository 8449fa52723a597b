"""``datagen inspect``: size, schema, parameter statistics, and a validation of every shard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..camera import SH_NORM
from ..errors import ShardError
from . import compression  # noqa: F401  (hdf5plugin's filters)
from .fields import LABELS
from .manifest import read_manifest, unlisted_shards
from .skin_tone import ITA_CATEGORIES, ita_category, skin_tones
from .video_stats import delta_stats, flow_stats
from .shards import validate_shard


SKIN_TONE_SAMPLES = 2000  # at most this many samples' skin colours (spread over the shards)
SKIN_TONE_LABELS = tuple(LABELS.index(name) for name in ("skin", "nose"))  # not the neck: it is shaded darker
PROP_NAMES = ("hair", "clothing", "glasses", "hand")
PROP_LABELS = tuple(LABELS.index(name) for name in PROP_NAMES)


@dataclass
class Report:
    path: Path
    name: str
    num_samples: int
    num_shards: int
    bytes: int = 0
    valid: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # (file, message)
    schema: list = field(default_factory=list)  # (name, per-sample shape, dtype, doc)
    stats: list = field(default_factory=list)  # (name, mean, std, min, max, unit)
    skin_tones: dict = field(default_factory=dict)  # ITA category -> fraction of the samples looked at
    skin_tone_samples: int = 0
    histograms: dict = field(default_factory=dict)  # name -> [(low, high, count)]
    frames: int = 1  # per sample: K of a video dataset's clips
    deltas: list = field(default_factory=list)  # video: per-frame change, as stats

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect_dataset(path: str | Path, deep: bool = True) -> Report:
    path = Path(path)
    manifest = read_manifest(path)
    report = Report(path=path, name=manifest["name"], num_samples=manifest["num_samples"], num_shards=manifest["num_shards"],
                    frames=int(manifest.get("frames", 1)))
    for record in manifest["shards"]:
        shard = path / record["file"]
        if not record["checksum"]:
            report.problems.append((record["file"], "not generated yet (run 'datagen generate' again)"))
            continue
        if not shard.exists():
            report.problems.append((record["file"], "missing"))
            continue
        try:
            info = validate_shard(shard, record["checksum"], deep=deep)
        except ShardError as e:
            report.problems.append((record["file"], str(e).split(": ", 1)[-1]))
            continue
        if (info.sample_start, info.num_samples) != (record["start"], record["stop"] - record["start"]):
            report.problems.append((record["file"], "sample range differs from the manifest's"))
            continue
        report.valid.append(info)
        report.bytes += info.bytes
    for name in unlisted_shards(path, manifest):
        report.problems.append((name, "not listed in the manifest: from another job or run, and never read"))
    if report.valid:
        _describe(report)
    return report


def _describe(report: Report) -> None:
    with h5py.File(report.valid[0].path, "r") as f:
        f.visititems(lambda n, o: report.schema.append((n, o.shape[1:], str(o.dtype), o.attrs.get("doc", "")))
                     if isinstance(o, h5py.Dataset) else None)
        expression_names = json.loads(f["params/expression"].attrs.get("names", "[]"))
    params, tones, shown, motion = {}, [], [], []
    k = report.frames
    per_shard = -(-SKIN_TONE_SAMPLES // (len(report.valid) * k))
    frames = (lambda a: a.reshape(-1, *a.shape[2:])) if k > 1 else (lambda a: a)  # noqa: E731 (clips -> frames)
    for info in report.valid:
        with h5py.File(info.path, "r") as f:
            for name in ("params/rotation", "params/expression", "params/identity", "params/intrinsics",
                         "params/translation", "landmark_visible", "params/light_sh", "landmarks_2d"):
                params.setdefault(name, []).append(f[name][()])
            height = f["image"].shape[-3]
            segmentation = frames(f["segmentation"][:per_shard])
            tones.append(skin_tones(frames(f["image"][:per_shard]), segmentation, SKIN_TONE_LABELS))
            shown.append(np.stack([(segmentation == label).any((1, 2)) for label in PROP_LABELS], 1))
            if k > 1:
                motion.append((f["flow_forward"][:per_shard], f["occluded_forward"][:per_shard],
                               f["depth"][:per_shard, :-1] > 0))
    p = {name: np.concatenate(v) for name, v in params.items()}
    if k > 1:
        _describe_motion(report, p, motion, expression_names)
        p = {name: frames(v) if name != "params/identity" else v for name, v in p.items()}
    degrees = np.degrees(p["params/rotation"])
    for i, axis in enumerate(("yaw", "pitch", "roll")):
        report.stats.append(_stat(f"{axis}", degrees[:, i], "deg"))
    report.stats.append(_stat("|identity| (rms)", np.sqrt((p["params/identity"] ** 2).mean(1)), ""))
    active = (p["params/expression"] > 0.05).sum(1)
    report.stats.append(_stat("active blendshapes", active, "count"))
    report.stats.append(_stat("neutral fraction", (active == 0).astype(float), ""))
    if "jawOpen" in expression_names:
        report.stats.append(_stat("jawOpen", p["params/expression"][:, expression_names.index("jawOpen")], "weight"))
    report.stats.append(_stat("focal length", p["params/intrinsics"][:, 1], "px"))
    report.stats.append(_stat("distance", -p["params/translation"][:, 2], "mm"))
    report.stats.append(_stat("ambient light", p["params/light_sh"][:, 0].mean(1) * SH_NORM[0], ""))
    report.stats.append(_stat("visible landmarks", p["landmark_visible"].sum(1), "of 68"))
    for name, column in zip(PROP_NAMES, np.concatenate(shown).T):  # props (hair, ...): how often an image shows one
        report.stats.append(_stat(f"shows {name}", column.astype(float), "share"))
    landmarks = p["landmarks_2d"]
    report.stats.append(_stat("face height", 100 * np.ptp(landmarks[..., 1], axis=1) / height, "% of image"))
    report.stats.append(_stat("inter-ocular", np.linalg.norm(landmarks[:, 36] - landmarks[:, 45], axis=1), "px"))
    for i, axis in ((0, "yaw"), (1, "pitch")):
        counts, edges = np.histogram(degrees[:, i], bins=np.arange(-90, 91, 15))
        report.histograms[axis] = [(float(lo), float(hi), int(n)) for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    ita = np.concatenate(tones)
    ita = ita[np.isfinite(ita)]
    report.skin_tone_samples = len(ita)
    names = [ita_category(v) for v in ita]
    report.skin_tones = {name: names.count(name) / max(len(names), 1) for name, _ in ITA_CATEGORIES}


def _describe_motion(report: Report, p: dict, motion: list, expression_names) -> None:
    """The per-frame change of a video dataset's clips (``video_stats``), at the job's fps."""
    from ..spec import parse_spec

    with h5py.File(report.valid[0].path, "r") as f:
        fps = parse_spec(f.attrs["job_spec"]).video.fps
    report.deltas = delta_stats(p["params/rotation"], p["params/translation"], p["params/expression"],
                                expression_names, fps)
    flow, occluded, drawn = (np.concatenate([m[i] for m in motion]) for i in range(3))
    report.deltas += flow_stats(flow.reshape(-1, *flow.shape[2:]), occluded.reshape(-1, *occluded.shape[2:]),
                                drawn.reshape(-1, *drawn.shape[2:]))


def _stat(name, values, unit):
    values = np.asarray(values, np.float64)
    return (name, values.mean(), values.std(), values.min(), values.max(), unit)


def format_report(report: Report) -> str:
    lines = [f"{report.path}: job '{report.name}', {report.num_samples} samples in {report.num_shards} shards, "
             f"{len(report.valid)} valid, {report.bytes / 2**20:.1f} MiB"]
    if report.schema:
        lines.append("\nschema (per sample" + (f": a clip of {report.frames} frames):" if report.frames > 1 else "):"))
        for name, shape, dtype, doc in report.schema:
            lines.append(f"  {name:<20} {str(tuple(shape)):<16} {dtype:<8} {doc}")
    if report.stats:
        lines.append("\nparameters:                mean       std       min       max")
        for name, mean, std, lo, hi, unit in report.stats:
            lines.append(f"  {name:<20} {mean:>9.3f} {std:>9.3f} {lo:>9.3f} {hi:>9.3f}  {unit}")
    if report.deltas:
        lines.append(f"\nper-frame change ({report.frames}-frame clips):  mean       std       min       max")
        for name, mean, std, lo, hi, unit in report.deltas:
            lines.append(f"  {name:<24} {mean:>9.3f} {std:>9.3f} {lo:>9.3f} {hi:>9.3f}  {unit}")
    for axis, bins in report.histograms.items():
        lines.append(f"\n{axis} (deg):")
        top = max(n for _, _, n in bins) or 1
        for lo, hi, n in bins:
            lines.append(f"  {lo:>5.0f} to {hi:>4.0f}  {n:>7d}  {'#' * round(30 * n / top)}")
    if report.skin_tone_samples:
        lines.append(f"\nskin tone (individual typology angle of the mean skin colour, {report.skin_tone_samples} samples):")
        for (name, lower), share in zip(ITA_CATEGORIES, report.skin_tones.values()):
            bound = f"> {lower:.0f} deg" if np.isfinite(lower) else "<= -30 deg"
            lines.append(f"  {name:<13} {bound:<11} {100 * share:5.1f}%")
    lines.append("")
    if report.problems:
        invalid = report.num_shards - len(report.valid)
        strays = len(report.problems) - invalid
        lines.append(f"INVALID: {invalid} of {report.num_shards} shards"
                     + (f", and {strays} shard files the manifest does not list" if strays else ""))
        lines.extend(f"  {file}: {message}" for file, message in report.problems)
    else:
        lines.append(f"OK: all {report.num_shards} shards valid")
    return "\n".join(lines)
