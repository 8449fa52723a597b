"""Convert upstream morphable models into datagen's ``MorphableModel``.

- ICT-FaceKit "Light" (MIT): the upstream ``FaceXModel/`` folder of OBJ files, or a
  ``.tar.xz``/``.tar.gz``/``.zip`` of it. Converted once with ``datagen models import``.
- Surrey Face Model (non-commercial): eos's ``share/`` files, read through ``eos.morphablemodel``
  every time it is loaded (it is small).
"""

from __future__ import annotations

import json
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .morphable_model import NUM_LANDMARKS, MorphableModel

CM_TO_MM = 10.0

# Upstream README "Face Model Topology": (name, vertex range, polygon range), both inclusive.
# Upstream "left" is the subject's left (+x), as in datagen.
ICT_REGIONS = (
    ("face", (0, 9408), (0, 9229)),
    ("head_neck", (9409, 11247), (9230, 11143)),
    ("mouth_socket", (11248, 13293), (11144, 13225)),
    ("eye_socket_left", (13294, 13677), (13226, 13629)),
    ("eye_socket_right", (13678, 14061), (13630, 14033)),
    ("gums_tongue", (14062, 17038), (14034, 17005)),
    ("teeth", (17039, 21450), (17006, 21495)),
    ("sclera_left", (21451, 22220), (21496, 22295)),
    ("iris_left", (22221, 23020), (22296, 23093)),
    ("sclera_right", (23021, 23790), (23094, 23893)),
    ("iris_right", (23791, 24590), (23894, 24691)),
    ("lacrimal_fluid_left", (24591, 24794), (24692, 24854)),
    ("lacrimal_fluid_right", (24795, 24998), (24855, 25017)),
    ("eye_blend_left", (24999, 25022), (25018, 25032)),
    ("eye_blend_right", (25023, 25046), (25033, 25047)),
    ("eye_occlusion_left", (25047, 25198), (25048, 25175)),
    ("eye_occlusion_right", (25199, 25350), (25176, 25303)),
    ("eyelashes_left", (25351, 26034), (25304, 25843)),
    ("eyelashes_right", (26035, 26718), (25844, 26383)),
)
ICT_NUM_VERTICES = 26719
ICT_NUM_POLYGONS = 26384
ICT_NUM_IDENTITY = 100
ICT_NEUTRAL = "generic_neutral_mesh.obj"
ICT_INDICES = "vertex_indices.json"
ICT_LICENCE = "MIT (ICT-FaceKit, Copyright (c) 2020 USC Institute for Creative Technologies)"


# --- ICT-FaceKit


def import_ict_facekit(source: str | Path, progress=None) -> MorphableModel:
    """Convert ICT-FaceKit from its ``FaceXModel/`` folder or an archive of it.

    Args:
      source: the folder (or a folder containing ``FaceXModel/``), or a .tar.xz/.tar.gz/.zip.
      progress: optional callable(done, total) called as files are read.
    """
    files = _FileSource(Path(source))
    try:
        indices = json.loads(files.read(ICT_INDICES))
        expression_names = tuple(indices["expressions"])
        landmark_ids = np.asarray(indices["idx_to_landmark_verts"], np.int32)
    except (KeyError, ValueError) as e:
        raise ModelError(f"{files.describe(ICT_INDICES)}: corrupt ({e})") from None
    if landmark_ids.shape != (NUM_LANDMARKS,):
        raise ModelError(f"{files.describe(ICT_INDICES)}: expected 68 landmark ids, got {landmark_ids.shape[0]}")

    names = [f"identity{i:03d}.obj" for i in range(ICT_NUM_IDENTITY)] + [f"{n}.obj" for n in expression_names]
    total = len(names) + 1
    neutral_text = files.read(ICT_NEUTRAL).decode("ascii", "replace")
    mean, uv, polygons = _parse_obj(neutral_text, files.describe(ICT_NEUTRAL), with_faces=True)
    if progress:
        progress(1, total)
    targets = np.empty((len(names), ICT_NUM_VERTICES, 3), np.float32)
    for i, name in enumerate(names):
        targets[i] = _parse_obj(files.read(name).decode("ascii", "replace"), files.describe(name))[0]
        if progress:
            progress(i + 2, total)
    deltas = (targets - mean[None]) * CM_TO_MM

    triangles, triangle_uv, triangle_polygon = _triangulate(polygons)
    region_names = tuple(r[0] for r in ICT_REGIONS)
    vertex_region = np.zeros(ICT_NUM_VERTICES, np.uint8)
    polygon_region = np.zeros(ICT_NUM_POLYGONS, np.uint8)
    for index, (_, (v0, v1), (p0, p1)) in enumerate(ICT_REGIONS):
        vertex_region[v0:v1 + 1] = index
        polygon_region[p0:p1 + 1] = index
    return MorphableModel(
        name="ict-facekit",
        mean=(mean * CM_TO_MM).astype(np.float32),
        identity_basis=np.ascontiguousarray(deltas[:ICT_NUM_IDENTITY]),
        expression_basis=np.ascontiguousarray(deltas[ICT_NUM_IDENTITY:]),
        triangles=triangles,
        triangle_region=polygon_region[triangle_polygon],
        vertex_region=vertex_region,
        uv=uv,
        triangle_uv=triangle_uv,
        landmark_ids=landmark_ids,
        pivot=np.zeros(3, np.float32),  # the upstream origin lies inside the head, level with the ears
        expression_names=expression_names,
        expression_kind="blendshape",
        region_names=region_names,
        licence=ICT_LICENCE,
        source=str(source),
    )


class _FileSource:
    """Reads named files from a folder, a folder holding ``FaceXModel/``, or an archive."""

    def __init__(self, path: Path):
        self.path = path
        self._members = None
        if not path.exists():
            raise ModelError(f"{path}: no such file or folder; give the ICT-FaceKit FaceXModel/ folder or its archive")
        if path.is_dir():
            self.folder = path / "FaceXModel" if (path / "FaceXModel").is_dir() else path
            if not (self.folder / ICT_NEUTRAL).exists():
                raise ModelError(f"{path}: no {ICT_NEUTRAL} here; give the ICT-FaceKit FaceXModel/ folder or its archive")
        else:
            self.folder = None
            self._members = self._read_archive(path)

    def _read_archive(self, path: Path) -> dict:
        members = {}
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    for info in z.infolist():
                        if not info.is_dir():
                            members[Path(info.filename).name] = z.read(info)
            else:
                with tarfile.open(path, "r:*") as t:
                    for info in t:
                        if info.isfile():
                            members[Path(info.name).name] = t.extractfile(info).read()
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise ModelError(f"{path}: corrupt or truncated archive ({e}); download it again") from None
        if ICT_NEUTRAL not in members:
            raise ModelError(f"{path}: the archive holds no {ICT_NEUTRAL}; is it ICT-FaceKit's FaceXModel?")
        return members

    def describe(self, name: str) -> str:
        return str(self.folder / name) if self.folder else f"{self.path}:{name}"

    def read(self, name: str) -> bytes:
        if self.folder is not None:
            try:
                return (self.folder / name).read_bytes()
            except OSError:
                raise ModelError(f"{self.describe(name)}: missing; the ICT-FaceKit folder is incomplete") from None
        if name not in self._members:
            raise ModelError(f"{self.describe(name)}: missing; the ICT-FaceKit archive is incomplete")
        return self._members[name]


_V = re.compile(r"^v\s+(\S+)\s+(\S+)\s+(\S+)", re.M)
_VT = re.compile(r"^vt\s+(\S+)\s+(\S+)", re.M)
_F = re.compile(r"^f\s+(.+)$", re.M)


def _parse_obj(text: str, where: str, with_faces: bool = False):
    try:
        vertices = np.array(_V.findall(text), dtype=np.float32)
    except ValueError as e:
        raise ModelError(f"{where}: corrupt OBJ vertex ({e})") from None
    if vertices.shape != (ICT_NUM_VERTICES, 3) or not np.isfinite(vertices).all():
        raise ModelError(f"{where}: expected {ICT_NUM_VERTICES} finite vertices, found {len(vertices)}; "
                         f"the file is truncated or not part of ICT-FaceKit")
    if not with_faces:
        return vertices, None, None
    uv = np.array(_VT.findall(text), dtype=np.float32)
    polygons = []
    for line in _F.findall(text):
        corners = [c.split("/") for c in line.split()]
        polygons.append([(int(c[0]) - 1, int(c[1]) - 1) for c in corners])
    if len(polygons) != ICT_NUM_POLYGONS:
        raise ModelError(f"{where}: expected {ICT_NUM_POLYGONS} polygons, found {len(polygons)}")
    return vertices, uv, polygons


def _triangulate(polygons):
    """Fan-triangulate quads and triangles; returns vertex ids, uv ids and the source polygon of each."""
    tri_v, tri_t, tri_p = [], [], []
    for p, corners in enumerate(polygons):
        for k in range(1, len(corners) - 1):
            a, b, c = corners[0], corners[k], corners[k + 1]
            tri_v.append((a[0], b[0], c[0]))
            tri_t.append((a[1], b[1], c[1]))
            tri_p.append(p)
    return np.array(tri_v, np.int32), np.array(tri_t, np.int32), np.array(tri_p, np.int64)


# --- Surrey Face Model (eos)

SFM_FILES = ("sfm_shape_3448.bin", "expression_blendshapes_3448.bin", "ibug_to_sfm.txt", "sfm_model_contours.json")
SFM_LICENCE = "Surrey Face Model: free for non-commercial use only (see the model's readme.txt)"


def load_sfm(folder: str | Path) -> MorphableModel:
    """Load the Surrey Face Model from eos's ``share/`` files through ``eos.morphablemodel``.

    The iBUG contour points that ``ibug_to_sfm.txt`` leaves out (1-8, 10-17) are taken
    from every other vertex of the model's outer contours (``sfm_model_contours.json``).
    """
    import eos

    folder = Path(folder)
    for name in SFM_FILES:
        if not (folder / name).exists():
            raise ModelError(f"{folder / name}: missing; the SFM folder needs {', '.join(SFM_FILES)}")
    try:
        model = eos.morphablemodel.load_model(str(folder / SFM_FILES[0]))
        blendshapes = eos.morphablemodel.load_blendshapes(str(folder / SFM_FILES[1]))
    except RuntimeError as e:
        raise ModelError(f"{folder}: eos cannot read the SFM ({e}); the files are corrupt") from None
    shape = model.get_shape_model()
    mean = np.asarray(shape.get_mean(), np.float32).reshape(-1, 3)
    basis = np.asarray(shape.get_rescaled_pca_basis(), np.float32).T.reshape(-1, mean.shape[0], 3)
    expression = np.stack([np.asarray(b.deformation, np.float32).reshape(-1, 3) for b in blendshapes])
    triangles = np.asarray(shape.get_triangle_list(), np.int32)
    uv = np.asarray(model.get_texture_coordinates(), np.float32)
    uv[:, 1] = 1.0 - uv[:, 1]  # eos: v = 0 at the top row; datagen (OBJ): v = 0 at the bottom
    return MorphableModel(
        name="sfm",
        mean=mean,
        identity_basis=basis,
        expression_basis=expression,
        triangles=triangles,
        triangle_region=np.zeros(len(triangles), np.uint8),
        vertex_region=np.zeros(len(mean), np.uint8),
        uv=uv,
        triangle_uv=triangles.copy(),
        landmark_ids=_sfm_landmarks(folder),
        pivot=np.array([0.0, 0.0, -90.0], np.float32),  # the SFM's origin is near the nose; rotate about the head's centre
        expression_names=tuple(b.name for b in blendshapes),
        expression_kind="blendshape",
        region_names=("face",),
        licence=SFM_LICENCE,
        source=str(folder),
    )


def _sfm_landmarks(folder: Path) -> np.ndarray:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        mapping = tomllib.loads((folder / "ibug_to_sfm.txt").read_text())["landmark_mappings"]
        contours = json.loads((folder / "sfm_model_contours.json").read_text())["model_contour"]
    except (ValueError, KeyError) as e:
        raise ModelError(f"{folder}: corrupt landmark mapping ({e})") from None
    ids = np.full(NUM_LANDMARKS, -1, np.int32)
    for ibug, vertex in mapping.items():
        ids[int(ibug) - 1] = int(vertex)
    right, left = contours["right_contour"], contours["left_contour"]
    ids[0:8] = right[2::2]  # contours run from the temple down to the chin
    ids[9:17] = left[2::2][::-1]
    ids[60], ids[64] = ids[48], ids[54]  # inner mouth corners: the SFM has none, use the outer ones
    missing = np.flatnonzero(ids < 0)
    if missing.size:
        raise ModelError(f"{folder}: no vertex for iBUG landmarks {list(missing + 1)}")
    return ids
