"""The AFLW2000-3D benchmark, as 3DDFA, 3DDFA-V2 and SynergyNet score it (``datagen evaluate --benchmark``).

Protocol: the 2D positions of the 68 landmarks; each face cropped from its ground-truth
landmarks' box (``crop="truth"``, the protocol's; ``crop="detected"`` crops around the detected
face that overlaps it); NME = mean point error / sqrt(w h) of the ground-truth landmarks' box;
yaw bins |yaw| <= 30, 30-60, > 60 degrees (the ground truth's yaw); the overall figure is the mean
of the bin means (of the bins that hold images), beside the plain mean over images. Next to each
reconstruction, the mean face (identity and expression zero) at the network's own pose and camera
is scored on the same crop: the difference is what the predicted shape adds.

Two layouts are read:
- AFLW2000-3D as published: ``imageNNNNN.jpg`` + ``imageNNNNN.mat`` with ``pt3d_68`` (3, 68) and
  ``Pose_Para`` (1, 7: pitch, yaw, roll in radians, then translation and scale);
- ``imageNNNNN.jpg`` + ``imageNNNNN.pts`` (iBUG format) + ``yaw.csv`` (``image,yaw_deg``).

Coordinates: AFLW2000-3D's landmarks (``pt3d_68`` as 3DDFA reads them) are pixel indices, the
first pixel's centre at 0; the ``.pts`` files hold those + 1 (iBUG's 1-based centres). datagen's
pixel centres are at +0.5 (``camera``), so a ``pt3d_68`` point p is p + 0.5 here and a ``.pts``
point q is q - 0.5 (``landmarks.read_pts``). NME is computed in datagen's convention.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..camera import project
from ..errors import DatagenError
from ..files import atomic_file

YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))  # |yaw| <= 30, 30 < |yaw| <= 60, > 60 degrees


@dataclass(frozen=True)
class BenchmarkImage:
    name: str
    path: Path
    landmarks: np.ndarray  # (68, 2) float32, datagen's pixel convention
    yaw_deg: float  # the ground truth's


def read_aflw2000(folder: str | Path) -> list[BenchmarkImage]:
    """Every image of an AFLW2000-3D folder, in either layout (module docstring), sorted by name."""
    from scipy.io import loadmat

    from ..photo.landmarks import read_pts

    folder = Path(folder)
    yaws = _yaw_table(folder / "yaw.csv")
    images = []
    for path in sorted(folder.glob("*.jpg")):
        mat, pts = path.with_suffix(".mat"), path.with_suffix(".pts")
        if mat.exists():
            try:
                data = loadmat(mat)
                points = np.asarray(data["pt3d_68"], np.float64)[:2].T + 0.5
                yaw = math.degrees(float(np.asarray(data["Pose_Para"]).reshape(-1)[1]))
            except (OSError, KeyError, ValueError, IndexError) as e:
                raise DatagenError(f"{mat}: not an AFLW2000-3D annotation ({e})") from None
        elif pts.exists():
            if path.name not in yaws:
                raise DatagenError(f"{folder / 'yaw.csv'}: no yaw for {path.name}")
            points, yaw = read_pts(pts), yaws[path.name]
        else:
            continue
        if points.shape != (68, 2):
            raise DatagenError(f"{path}: {len(points)} landmarks, the benchmark has 68")
        images.append(BenchmarkImage(path.name, path, points.astype(np.float32), yaw))
    if not images:
        raise DatagenError(f"{folder}: no AFLW2000-3D images (imageNNNNN.jpg with a .mat, or a .pts and yaw.csv)")
    return images


def _yaw_table(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["image"]: float(row["yaw_deg"]) for row in csv.DictReader(f)}


def box_nme(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean 2D distance of the 68 points / sqrt(w h) of the ground truth's bounding box."""
    size = truth.max(0) - truth.min(0)
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / np.sqrt(size[0] * size[1]))


def yaw_bin(yaw_deg: float) -> str:
    a = abs(yaw_deg)
    for lo, hi in YAW_BINS:
        if a <= hi or hi == YAW_BINS[-1][1]:
            return f"{lo:.0f}-{hi:.0f}"
    raise AssertionError  # unreachable


def summarise(rows: list[dict], key: str) -> dict:
    """{bin: (mean, count)}, the mean of the bin means over the bins that hold images, and the plain mean."""
    bins = {}
    for lo, hi in YAW_BINS:
        name = f"{lo:.0f}-{hi:.0f}"
        values = [r[key] for r in rows if r["yaw_bin"] == name]
        bins[name] = (float(np.mean(values)) if values else float("nan"), len(values))
    filled = [mean for mean, n in bins.values() if n]
    return {"bins": bins, "mean_of_bins": float(np.mean(filled)) if filled else float("nan"),
            "mean": float(np.mean([r[key] for r in rows])) if rows else float("nan")}


def mean_face_landmarks(reconstructor, result) -> np.ndarray:
    """(68, 2) photo pixels: the model's mean face at ``result``'s pose and camera, on its crop."""
    import dataclasses

    params = dataclasses.replace(result.params, identity=np.zeros_like(result.params.identity),
                                 expression=np.zeros_like(result.params.expression))
    vertices = reconstructor.camera_vertices(params)
    points = project(vertices[reconstructor.model.landmark_ids][None], params.intrinsics[None])[0]
    return points * result.box[2] / reconstructor.size + np.asarray(result.box[:2])


def evaluate_aflw2000(reconstructor, folder: str | Path, crop: str = "truth", csv_path: str | Path | None = None,
                      overlays: str | Path | None = None, progress=None) -> dict:
    """Score ``reconstructor`` on an AFLW2000-3D folder under the protocol (module docstring).

    Returns {"rows": per image, "nme": summary, "mean_face_nme": summary, "crop": crop}; writes the
    rows as CSV to ``csv_path`` and, with ``overlays``, each reconstruction's overlay and a sheet.
    """
    from ..photo.fitter import read_photo
    from ..photo.landmarks import default_detector, matching_face

    if crop not in ("truth", "detected"):
        raise DatagenError(f"crop must be 'truth' (the protocol's) or 'detected', got {crop!r}")
    rows, pictures = [], []
    images = read_aflw2000(folder)
    for k, item in enumerate(images):
        image = read_photo(item.path)
        around, crop_from = item.landmarks, "truth"
        if crop == "detected":
            found = matching_face(default_detector().faces(image), item.landmarks)
            around, crop_from = (found, "detected") if found is not None else (item.landmarks, "truth (not detected)")
        result = reconstructor.reconstruct(image, around)
        rows.append({"image": item.name, "yaw_deg": item.yaw_deg, "yaw_bin": yaw_bin(item.yaw_deg),
                     "nme": box_nme(result.landmarks, item.landmarks),
                     "mean_face_nme": box_nme(mean_face_landmarks(reconstructor, result), item.landmarks),
                     "crop_from": crop_from})
        if overlays:
            picture = reconstructor.overlay(result)
            Path(overlays).mkdir(parents=True, exist_ok=True)
            picture.save(Path(overlays) / f"{Path(item.name).stem}-overlay.png")
            pictures.append(picture)
        if progress:
            progress(k + 1, len(images))
    if csv_path:
        _write_rows(csv_path, rows)
    if pictures:
        _sheet(pictures).save(Path(overlays) / "sheet.png")
    return {"rows": rows, "nme": summarise(rows, "nme"), "mean_face_nme": summarise(rows, "mean_face_nme"), "crop": crop}


def _write_rows(path: str | Path, rows: list[dict]) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _sheet(pictures, columns: int = 4):
    from PIL import Image

    w, h = pictures[0].size
    rows = -(-len(pictures) // columns)
    sheet = Image.new("RGB", (min(columns, len(pictures)) * w, rows * h))
    for k, picture in enumerate(pictures):
        sheet.paste(picture.resize((w, h)), ((k % columns) * w, (k // columns) * h))
    return sheet


PUBLISHED = (("3DDFA", 4.94), ("3DDFA-V2", 3.51), ("SynergyNet", 3.41))  # NME %, all 2,000 images, mean of bins


def benchmark_report(r: dict) -> list[str]:
    """``evaluate_aflw2000``'s result as the lines ``datagen evaluate --benchmark`` prints."""
    lines = [f"AFLW2000-3D ({len(r['rows'])} images, crop from {r['crop']}): NME of the 68 points / sqrt(w h) of "
             f"the ground-truth box"]
    for key, label in (("nme", "reconstruction"), ("mean_face_nme", "mean face at the network's pose")):
        s = r[key]
        bins = ", ".join(f"|yaw| {b}: {100 * m:.2f}% (n={n})" for b, (m, n) in s["bins"].items() if n)
        lines.append(f"  {label}: {100 * s['mean_of_bins']:.2f}% (mean of the yaw bins; plain mean "
                     f"{100 * s['mean']:.2f}%); {bins}")
    lines.append("  published on all 2,000 images: " + ", ".join(f"{name} {nme:.2f}%" for name, nme in PUBLISHED))
    return lines
