"""Mesh files (OBJ with the model's UVs, or PLY) of dense vertices: a dataset sample's face
(``datagen mesh``), or a reconstruction (``datagen reconstruct``), for MeshLab or Blender.

Vertices are written as given: datagen's camera space, millimetres (x right, y up, the camera
looking down -z), so the mesh of a sample lines up with its depth map and landmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatagenError
from ..files import write_text_or_fail

MESH_SUFFIXES = (".obj", ".ply")


def write_mesh(path: str | Path, vertices: np.ndarray, model, comment: str = "datagen mesh", triangles=None,
               uv=None, triangle_uv=None) -> None:
    """OBJ (with UVs) or PLY, by the suffix; written whole or not at all. The triangles and UVs are the
    model's unless given (a subdivided mesh's: ``triangles`` (F, 3) into ``vertices``, ``uv`` (T, 2),
    ``triangle_uv`` (F, 3) into ``uv``)."""
    path = Path(path)
    triangles = model.triangles if triangles is None else triangles
    uv = model.uv if uv is None else uv
    triangle_uv = model.triangle_uv if triangle_uv is None else triangle_uv
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise DatagenError(f"{path}: mesh files are .obj or .ply")
    unit = "mm, camera space (x right, y up, camera looking down -z)"
    if suffix == ".ply":
        header = (f"ply\nformat ascii 1.0\ncomment {comment}: {unit}\nelement vertex {len(vertices)}\n"
                  f"property float x\nproperty float y\nproperty float z\nelement face {len(triangles)}\n"
                  "property list uchar int vertex_indices\nend_header\n")
        body = "\n".join(f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in vertices)
        faces = "\n".join(f"3 {a} {b} {c}" for a, b, c in triangles)
        text = header + body + "\n" + faces + "\n"
    else:
        lines = [f"# {comment}: {unit}"]
        lines += [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in vertices]
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
        lines += [f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}"
                  for (a, b, c), (ta, tb, tc) in zip(triangles, triangle_uv)]
        text = "\n".join(lines) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatagenError(f"{path.parent}: cannot make the folder ({e.strerror or e})") from None
    write_text_or_fail(path, text, "mesh")


def write_sample_mesh(dataset, index: int, path: str | Path) -> list[Path]:
    """The face of sample ``index`` of a ``ShardedDataset`` as a mesh file (the stored vertices, else the
    ones its parameters give); a clip's as one file per frame, ``<name>-frame<t>``; returns the paths."""
    vertices, path = dataset.vertices(index), Path(path)
    comment = f"datagen sample {index} of {dataset.path}"
    if vertices.ndim == 2:
        write_mesh(path, vertices, dataset.model(), comment=comment)
        return [path]
    paths = [path.with_name(f"{path.stem}-frame{t:02d}{path.suffix}") for t in range(len(vertices))]
    for t, (frame, frame_path) in enumerate(zip(vertices, paths)):
        write_mesh(frame_path, frame, dataset.model(), comment=f"{comment}, frame {t}")
    return paths


def write_sample_meshes(dataset, indices, output: str | Path | None = None, ply: bool = False) -> list[Path]:
    """Meshes of several samples (``datagen mesh``): to ``output`` if it names one mesh file (one
    index), else ``sample-<index>.obj`` (``.ply`` with ``ply``) in the folder ``output`` (default: here);
    a clip's, one per frame (``write_sample_mesh``). Returns the paths written."""
    indices = [int(i) for i in indices]
    output = Path(output) if output is not None else None
    named = output is not None and output.suffix.lower() in MESH_SUFFIXES
    if named and len(indices) > 1:
        raise DatagenError(f"{output} names one mesh file; give a folder for {len(indices)} samples")
    for index in indices:
        if not 0 <= index < len(dataset):
            raise DatagenError(f"sample {index}: the dataset has {len(dataset)} samples")
    folder = output if output is not None and not named else Path(".")
    return [path for index in indices for path in
            write_sample_mesh(dataset, index, output if named else folder / f"sample-{index}{'.ply' if ply else '.obj'}")]
