"""Every dataset a shard holds, declared once: name, shape, dtype, unit, meaning, attributes, and
when it is written. The writer, the validator, ``inspect``, the readers and the README's table
(``markdown_table``) all read this registry; a new field is one ``register`` call.

A field has a ``level``: how often a sample holds it. A sample is a still, or in a video job
(``[video] frames`` K > 1) a clip. ``sample``: once per sample (the identity, a clip's material);
``frame``: once per frame, (K, ...) in a video job; ``pair``: once per pair of consecutive frames,
(K - 1, ...), video jobs only (the optical flow). Entries along a file's first axis are samples.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import numpy as np

LEVELS = ("sample", "frame", "pair")

# The segmentation's label table (written into every shard). Left/right are the subject's.
LABELS = (
    "background", "skin", "head_neck", "nose", "brow_right", "brow_left", "eye_right", "eye_left",
    "upper_lip", "lower_lip", "mouth_interior", "teeth", "hair", "clothing", "glasses", "hand",
    "photo_occluder",  # photo-realistic samples: the photo's own hair or glasses kept over the face
)
# The procedural material's parameters, in ``params/appearance`` order (synth.sampling draws them).
APPEARANCE_NAMES = (
    "melanin", "haemoglobin", "lip_redness", "brow_darkness", "cheek_redness", "blotch_strength",
    "pore_strength", "specular", "shininess", "iris_hue", "iris_darkness", "teeth_yellowness",
    "pattern_offset_u", "pattern_offset_v",
)
# The fine detail's parameters, in ``params/detail`` order (synth.detail.DetailParams). source: 0 none
# (fine = coarse), 1 procedural, 2 a photo's detail (photo: its index over the job's detail photos,
# else -1) mixed with the procedural one.
DETAIL_NAMES = (
    "source", "photo", "strength", "procedural_weight", "photo_weight", "age", "pore_size_mm", "pore_depth_mm",
    "line_depth_mm", "noise_origin_x", "noise_origin_y", "noise_origin_z", "expression_creases",
)


@dataclass(frozen=True)
class Dims:
    """The sizes a field's shape is made of: numbers for a job and model, letters for the README."""

    height: int | str
    width: int | str
    num_identity: int | str
    num_expression: int | str
    num_vertices: int | str

    @classmethod
    def of(cls, spec, model) -> Dims:
        return cls(spec.render.height, spec.render.width, model.num_identity, model.num_expression, model.num_vertices)


SYMBOLS = Dims(height="H", width="W", num_identity="K_id", num_expression="K_ex", num_vertices="V")


def _always(spec) -> bool:
    return True


@dataclass(frozen=True)
class Field:
    """One dataset of a shard.

    shape:   per-entry shape from the job's and model's ``Dims``
    unit:    "" where none applies
    attrs:   HDF5 attributes from the model (label tables, blendshape names)
    enabled: whether a job writes it (``setting`` names the job key, for the docs); a field that
             is always written is required of every shard
    """

    name: str
    shape: Callable[[Dims], tuple]
    dtype: str
    unit: str
    doc: str
    attrs: Callable[[object], dict] | None = None
    enabled: Callable[[object], bool] = _always
    setting: str = ""
    level: str = "frame"  # see the module docstring: "sample", "frame" or "pair"
    older_shards_may_lack: bool = False  # added after shards were first written: not required of a shard

    @property
    def required(self) -> bool:
        return self.enabled is _always and not self.older_shards_may_lack


@dataclass(frozen=True)
class ShardField:
    """A field as one job writes it: the concrete per-entry shape and the attributes."""

    name: str
    shape: tuple
    dtype: str
    doc: str
    attrs: dict


REGISTRY: dict[str, Field] = {}


def register(field: Field) -> Field:
    if field.level not in LEVELS:
        raise ValueError(f"field {field.name}: level must be one of {LEVELS}, got {field.level!r}")
    if field.name in REGISTRY:
        raise ValueError(f"field {field.name} is already registered")
    REGISTRY[field.name] = field
    return field


def unregister(name: str) -> None:
    REGISTRY.pop(name)


def shard_fields(spec, model) -> dict[str, ShardField]:
    """The fields a shard of this job holds, in registry order: per sample (a still or a clip)."""
    frames = spec.video.frames if spec.video.is_clip else 0
    axis = {"sample": (), "frame": (frames,) if frames else (), "pair": (frames - 1,)}
    return {name: dataclasses.replace(f, shape=axis[REGISTRY[name].level] + f.shape)
            for name, f in frame_fields(spec, model).items()}


def frame_fields(spec, model, pairs: bool = True) -> dict[str, ShardField]:
    """The fields of one frame (of a still: the sample) and of one pair of frames (a clip's ``pair``
    fields; ``pairs=False``: without them, what the annotate stage makes per frame)."""
    dims = Dims.of(spec, model)
    return {f.name: ShardField(f.name, tuple(f.shape(dims)), f.dtype, _hdf5_doc(f), f.attrs(model) if f.attrs else {})
            for f in REGISTRY.values() if f.enabled(spec) and (pairs or f.level != "pair")}


def required_names() -> tuple[str, ...]:
    return tuple(f.name for f in REGISTRY.values() if f.required)


def _hdf5_doc(field: Field) -> str:
    return f"{field.doc} [{field.unit}]" if field.unit else field.doc


@dataclass(frozen=True)
class SampleBatch(Mapping):
    """B annotated samples, the annotate stage's output and the writer's input: one (B, ...) array
    per field of the job (``shard_fields``), read like a dict."""

    arrays: Mapping[str, np.ndarray]

    @classmethod
    def checked(cls, arrays: Mapping[str, np.ndarray], fields: dict[str, ShardField]) -> SampleBatch:
        """The batch, after checking it holds exactly ``fields``, each with its shape and dtype."""
        missing, extra = set(fields) - set(arrays), set(arrays) - set(fields)
        if missing or extra:
            raise ValueError(f"a batch must hold the job's fields: missing {sorted(missing)}, undeclared {sorted(extra)}")
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"a batch's fields hold different numbers of samples: {sorted(sizes)}")
        for name, f in fields.items():
            a = arrays[name]
            if a.shape[1:] != f.shape or a.dtype != np.dtype(f.dtype):
                raise ValueError(f"{name} has shape {a.shape[1:]} {a.dtype}, its field says {f.shape} {f.dtype}")
        return cls(dict(arrays))

    @property
    def size(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __iter__(self):
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)


def markdown_table() -> str:
    """The README's table of fields (tests/test_fields.py keeps the README equal to it)."""
    rows = ["| dataset | per | shape | dtype | unit | meaning |", "|---|---|---|---|---|---|"]
    for f in REGISTRY.values():
        shape = tuple(f.shape(SYMBOLS))
        text = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
        doc = f"only with `{f.setting}`: {f.doc}" if f.setting else f.doc
        rows.append(f"| `{f.name}` | {f.level} | {text} | {f.dtype} | {f.unit or '—'} | {doc} |")
    return "\n".join(rows)


def _labels(model) -> dict:
    return {"labels": json.dumps(list(LABELS))}


def _expression_names(model) -> dict:
    return {"names": json.dumps(list(model.expression_names))}


def _appearance_names(model) -> dict:
    return {"names": json.dumps(list(APPEARANCE_NAMES))}


def _detail_names(model) -> dict:
    return {"names": json.dumps(list(DETAIL_NAMES))}


def _has_detail(spec) -> bool:
    return spec.sampling.detail.probability > 0


DETAIL_SETTING = "sampling.detail.probability > 0"


def _is_clip(spec) -> bool:
    return spec.video.is_clip


VIDEO_SETTING = "video.frames > 1"


_LABEL_LIST = ", ".join(f"{i} {name}" for i, name in enumerate(LABELS))

for _field in (
    Field("image", lambda d: (d.height, d.width, 3), "uint8", "sRGB", "the image, row 0 = top"),
    Field("segmentation", lambda d: (d.height, d.width), "uint8", "label",
          f"part labels, in attrs `labels`: {_LABEL_LIST} (left/right = the subject's)", attrs=_labels),
    Field("depth", lambda d: (d.height, d.width), "float32", "mm",
          "along the viewing axis (-z in camera space), 0 on background"),
    Field("normal", lambda d: (d.height, d.width, 3), "float16", "unit vector",
          "normal in camera space (x right, y up, z towards the camera), 0 on background"),
    Field("landmarks_2d", lambda d: (68, 2), "float32", "pixels",
          "iBUG-68 landmarks (x right, y down; pixel centres at +0.5)"),
    Field("landmarks_3d", lambda d: (68, 3), "float32", "mm", "the same landmarks in camera space"),
    Field("landmark_visible", lambda d: (68,), "bool", "", "inside the image and not self-occluded"),
    Field("sample_index", lambda d: (), "int64", "", "global index: (job seed, sample_index) regenerates the sample", level="sample"),
    Field("params/identity", lambda d: (d.num_identity,), "float32", "", "standard-normal identity coefficients", level="sample"),
    Field("params/expression", lambda d: (d.num_expression,), "float32", "weight",
          "blendshape weights in [0, 1] (standard normal for PCA models), names in attrs `names`",
          attrs=_expression_names),
    Field("params/rotation", lambda d: (3,), "float32", "radians", "yaw, pitch, roll; R = Rz(roll) Rx(pitch) Ry(yaw)"),
    Field("params/translation", lambda d: (3,), "float32", "mm", "camera-space position of the model's pivot"),
    Field("params/intrinsics", lambda d: (4,), "float32", "pixels", "fx, fy, cx, cy"),
    Field("params/light_sh", lambda d: (9, 3), "float32", "",
          "radiance SH coefficients per RGB channel, camera space"),
    Field("params/appearance", lambda d: (len(APPEARANCE_NAMES),), "float32", "",
          "procedural albedo parameters, names in attrs `names`", attrs=_appearance_names, older_shards_may_lack=True, level="sample"),
    Field("params/background", lambda d: (2,), "int64", "",
          "background kind (0 procedural, 1 image, 2 fitted photo) and its index", older_shards_may_lack=True, level="sample"),
    Field("params/albedo_source", lambda d: (), "int64", "",
          "the fitted photo whose albedo the skin uses (index over the job's texture libraries, in order); -1 procedural",
          older_shards_may_lack=True, level="sample"),
    Field("depth_fine", lambda d: (d.height, d.width), "float32", "mm",
          "depth of the surface displaced by the fine detail (pores, lines, creases); = depth where a sample "
          "has none", enabled=_has_detail, setting=DETAIL_SETTING),
    Field("normal_fine", lambda d: (d.height, d.width, 3), "float16", "unit vector",
          "camera-space normal of the displaced surface; = normal where a sample has none",
          enabled=_has_detail, setting=DETAIL_SETTING),
    Field("params/detail", lambda d: (len(DETAIL_NAMES),), "float32", "",
          "the fine detail's source (0 none, 1 procedural, 2 photo), photo index, strength and procedural "
          "parameters, names in attrs `names`: with params/expression they rebuild the detail map",
          attrs=_detail_names, enabled=_has_detail, setting=DETAIL_SETTING, level="sample"),
    Field("flow_forward", lambda d: (d.height, d.width, 2), "float16", "pixels",
          "optical flow from frame t to t+1 at each pixel of frame t: where the point seen there is in frame t+1 "
          "minus where it is in frame t, (dx, dy), x right, y down; exact, from the geometry (background: its own "
          "motion)", level="pair", enabled=_is_clip, setting=VIDEO_SETTING),
    Field("flow_backward", lambda d: (d.height, d.width, 2), "float16", "pixels",
          "optical flow from frame t+1 to t at each pixel of frame t+1 (position in t minus position in t+1)",
          level="pair", enabled=_is_clip, setting=VIDEO_SETTING),
    Field("occluded_forward", lambda d: (d.height, d.width), "bool", "",
          "the point seen at this pixel of frame t is hidden in frame t+1 (behind something, turned away) or "
          "leaves the image: flow_forward has no photometric match there", level="pair", enabled=_is_clip,
          setting=VIDEO_SETTING),
    Field("occluded_backward", lambda d: (d.height, d.width), "bool", "",
          "the same for the pixels of frame t+1 and frame t", level="pair", enabled=_is_clip, setting=VIDEO_SETTING),
    Field("vertices", lambda d: (d.num_vertices, 3), "float32", "mm", "dense vertices in camera space",
          enabled=lambda spec: spec.output.store_vertices, setting="output.store_vertices = true"),
):
    register(_field)
