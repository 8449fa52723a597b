"""The morphable model: one type for every 3DMM, and its on-disk format.

Conventions (every model is converted to these):
- units are millimetres;
- model space: x towards the subject's left, y up, z out of the face (the face looks down +z);
- ``vertices = mean + identity @ identity_basis + expression @ expression_basis``. Identity
  coefficients are standard normal (the basis is already scaled by the PCA standard
  deviations, as eos's ``get_rescaled_pca_basis``). Expression coefficients are
  blendshape weights in [0, 1] (``expression_kind == "blendshape"``, ICT, SFM) or standard
  normal (``"pca"``). A short coefficient vector is zero-padded (the eos contract).

A converted model is a directory: ``model.json`` (metadata and a SHA-256 of every array
file) next to one ``.npy`` file per array.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..files import atomic_directory, file_sha256

FORMAT_VERSION = 1
NUM_LANDMARKS = 68

_ARRAYS = {
    # name: (dtype, trailing shape or None)
    "mean": ("float32", (3,)),
    "identity_basis": ("float32", None),
    "expression_basis": ("float32", None),
    "triangles": ("int32", (3,)),
    "triangle_region": ("uint8", None),
    "vertex_region": ("uint8", None),
    "uv": ("float32", (2,)),
    "triangle_uv": ("int32", (3,)),
    "landmark_ids": ("int32", None),
    "pivot": ("float32", None),
}


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """A linear 3D morphable model with expression blendshapes, regions and 68 landmarks.

    Arrays (V vertices, F triangles, T texture coordinates):
      mean:             (V, 3) float32, mm, model space
      identity_basis:   (K_id, V, 3) float32, mm per unit of a standard-normal coefficient
      expression_basis: (K_ex, V, 3) float32, mm per unit weight
      triangles:        (F, 3) int32 vertex ids, counter-clockwise seen from outside
      triangle_region:  (F,) uint8 index into ``region_names``
      vertex_region:    (V,) uint8 index into ``region_names``
      uv:               (T, 2) float32 texture coordinates, v = 0 at the bottom (OBJ)
      triangle_uv:      (F, 3) int32 ids into ``uv``
      landmark_ids:     (68,) int32 vertex id of each iBUG-68 landmark (0-based order)
      pivot:            (3,) float32 mm, the point the head rotates about
    """

    name: str
    mean: np.ndarray
    identity_basis: np.ndarray
    expression_basis: np.ndarray
    triangles: np.ndarray
    triangle_region: np.ndarray
    vertex_region: np.ndarray
    uv: np.ndarray
    triangle_uv: np.ndarray
    landmark_ids: np.ndarray
    pivot: np.ndarray
    expression_names: tuple = ()
    expression_kind: str = "blendshape"
    region_names: tuple = ("face",)
    licence: str = ""
    source: str = ""
    checksum: str = ""
    _flat: dict = field(default_factory=dict, repr=False)

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def num_identity(self) -> int:
        return self.identity_basis.shape[0]

    @property
    def num_expression(self) -> int:
        return self.expression_basis.shape[0]

    def region_vertices(self, *names: str) -> np.ndarray:
        """Boolean (V,) mask of the vertices in any of the named regions."""
        ids = [self.region_names.index(n) for n in names if n in self.region_names]
        return np.isin(self.vertex_region, ids)

    def _basis(self, which: str) -> np.ndarray:
        if which not in self._flat:
            basis = getattr(self, which)
            self._flat[which] = np.ascontiguousarray(basis.reshape(basis.shape[0], -1))
        return self._flat[which]

    def vertices(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """Model-space vertices, mm.

        Args:
          identity: (K,) or (B, K) standard-normal coefficients, K <= num_identity (zero-padded).
          expression: (E,) or (B, E) blendshape weights, E <= num_expression (zero-padded).
        Returns:
          (V, 3) or (B, V, 3) float32.
        """
        identity, expression = np.asarray(identity, np.float32), np.asarray(expression, np.float32)
        single = identity.ndim == 1
        identity, expression = np.atleast_2d(identity), np.atleast_2d(expression)
        k, e = identity.shape[1], expression.shape[1]
        if k > self.num_identity or e > self.num_expression:
            raise ValueError(f"{self.name} has {self.num_identity} identity and {self.num_expression} "
                             f"expression components; got {k} and {e}")
        # One sample at a time (a vector-matrix product each): a face's vertices are then the same
        # bits in any batch, so a sample regenerates alone exactly (a batched product sums in
        # another order: ~1 ulp apart); and on this machine it is the faster of the two.
        identity_basis = self._basis("identity_basis")[:k]
        expression_basis = self._basis("expression_basis")[:e]
        mean = self.mean.reshape(-1)
        batch = max(len(identity), len(expression))  # a single row broadcasts over the other's
        identity, expression = (np.broadcast_to(x, (batch, x.shape[1])) for x in (identity, expression))
        flat = np.empty((batch, mean.size), np.float32)
        for i, (a, b) in enumerate(zip(identity, expression)):
            flat[i] = mean + a @ identity_basis
            if e:
                flat[i] += b @ expression_basis
        out = flat.reshape(-1, self.num_vertices, 3)
        return out[0] if single else out


def save_model(model: MorphableModel, directory: str | Path) -> Path:
    """Write ``model`` as a model directory (written to a temporary name, then renamed)."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        _write_model(model, tmp)
    return directory


def _write_model(model: MorphableModel, tmp: Path) -> None:
    arrays = {}
    for name, (dtype, _) in _ARRAYS.items():
        data = np.ascontiguousarray(getattr(model, name), dtype=dtype)
        np.save(tmp / f"{name}.npy", data, allow_pickle=False)
        arrays[name] = {"file": f"{name}.npy", "sha256": file_sha256(tmp / f"{name}.npy"),
                        "shape": list(data.shape), "dtype": dtype}
    meta = {
        "format_version": FORMAT_VERSION,
        "name": model.name,
        "units": "millimetres",
        "expression_kind": model.expression_kind,
        "expression_names": list(model.expression_names),
        "region_names": list(model.region_names),
        "licence": model.licence,
        "source": model.source,
        "arrays": arrays,
    }
    meta["checksum"] = _checksum(arrays)
    (tmp / "model.json").write_text(json.dumps(meta, indent=1))


def load_model(directory: str | Path, verify: bool = True) -> MorphableModel:
    """Load a converted model directory, checking every array against its recorded SHA-256."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{directory}: not a converted model (no model.json); "
                         f"convert one with 'datagen models import'") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{meta_path}: corrupt model metadata ({e}); delete {directory} and import the model again") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{meta_path}: model format {meta.get('format_version')} is not {FORMAT_VERSION}; "
                         f"import the model again with this version of datagen")
    arrays = {}
    for name, (dtype, trailing) in _ARRAYS.items():
        info = meta["arrays"].get(name)
        path = directory / f"{name}.npy"
        if info is None:
            raise ModelError(f"{meta_path}: no entry for '{name}'; import the model again")
        if verify and (not path.exists() or file_sha256(path) != info["sha256"]):
            raise ModelError(f"{path}: missing or corrupt (checksum mismatch); delete {directory} and import the model again")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ModelError(f"{path}: unreadable ({e}); delete {directory} and import the model again") from None
        if list(data.shape) != info["shape"] or str(data.dtype) != dtype or (trailing and data.shape[1:] != trailing):
            raise ModelError(f"{path}: shape {data.shape} {data.dtype} does not match model.json; import the model again")
        arrays[name] = data
    return MorphableModel(
        name=meta["name"], expression_names=tuple(meta["expression_names"]),
        expression_kind=meta["expression_kind"], region_names=tuple(meta["region_names"]),
        licence=meta.get("licence", ""), source=meta.get("source", ""), checksum=meta["checksum"], **arrays)


def model_checksum(model: MorphableModel) -> str:
    """A checksum of the model's arrays (the one stored in model.json for converted models)."""
    if model.checksum:
        return model.checksum
    h = hashlib.sha256()
    for name in _ARRAYS:
        h.update(np.ascontiguousarray(getattr(model, name)).tobytes())
    return h.hexdigest()


def _checksum(arrays: dict) -> str:
    return hashlib.sha256(json.dumps({k: v["sha256"] for k, v in sorted(arrays.items())}).encode()).hexdigest()

