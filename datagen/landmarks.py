"""iBUG-68 landmarks of a photo: read from a 300-W ``.pts`` file, or detected.

Pixel convention (datagen's everywhere): origin at the image's top-left corner, pixel (i, j)'s
centre at (i + 0.5, j + 0.5). 300-W ``.pts`` files are 1-based (the first pixel's centre is
1.0), so a read point is shifted by -0.5.

Detection uses MediaPipe's face mesh (Apache-2.0; its weights ship inside the pip package, so
nothing is downloaded at run time): an optional extra, ``pip install 'datagen[detect]'``. Its
468 points are turned into iBUG-68 with ``MEDIAPIPE_TO_IBUG``, derived on renders of ICT-FaceKit
faces whose landmarks are known exactly (``scripts/derive_mediapipe_to_ibug.py``), so the
annotated photos stay an independent check.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from .errors import DatagenError

MEDIAPIPE_TO_IBUG = (34, 227, 177, 215, 172, 150, 149, 148, 152, 377, 378, 379, 397, 435, 401, 447, 264, 70, 63,
                     105, 66, 107, 336, 296, 334, 293, 300, 168, 197, 195, 4, 240, 97, 2, 326, 460, 7, 160, 158, 155,
                     153, 144, 382, 385, 387, 249, 373, 380, 61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91, 77,
                     81, 13, 311, 375, 402, 14, 178)


class LandmarkError(DatagenError):
    """A photo whose landmarks cannot be read or found (no face, several faces, a bad .pts)."""


def read_pts(path: str | Path) -> np.ndarray:
    """(68, 2) float32 landmarks in datagen's pixel convention from an iBUG/300-W ``.pts`` file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise LandmarkError(f"{path}: cannot read the landmark file ({getattr(e, 'strerror', None) or e})") from None
    match = re.search(r"n_points:\s*(\d+)\s*\{(.*?)\}", text, re.S)
    if not match:
        raise LandmarkError(f"{path}: not an iBUG .pts file (no 'n_points:' and '{{ ... }}' block)")
    try:
        points = np.array([float(v) for v in match.group(2).split()], np.float64).reshape(-1, 2)
    except ValueError:
        raise LandmarkError(f"{path}: the point list holds something that is not a number") from None
    if int(match.group(1)) != 68 or len(points) != 68:
        raise LandmarkError(f"{path}: {len(points)} points; datagen needs the 68 iBUG points")
    return (points - 0.5).astype(np.float32)


def interocular_distance(landmarks: np.ndarray) -> float:
    """Outer eye corners (iBUG 37 and 46): the 300-W normalisation."""
    return float(np.linalg.norm(landmarks[36] - landmarks[45]))


class Detector:
    """MediaPipe face mesh -> iBUG-68, one face per photo (several or none is a LandmarkError)."""

    def __init__(self, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError:
            raise LandmarkError("landmark detection needs MediaPipe: pip install 'datagen[detect]' "
                                "(or give each photo's landmarks as an iBUG .pts file beside it)") from None
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4,
                                                     min_detection_confidence=min_confidence)

    def __call__(self, image: np.ndarray, name: str = "photo") -> np.ndarray:
        """(68, 2) float32 landmarks of the one face in an (H, W, 3) uint8 RGB image."""
        faces = self._mesh.process(np.ascontiguousarray(image)).multi_face_landmarks or []
        if not faces:
            raise LandmarkError(f"{name}: no face found")
        if len(faces) > 1:
            raise LandmarkError(f"{name}: {len(faces)} faces found; datagen fits one face per photo "
                                f"(crop it, or give its landmarks as a .pts file)")
        points = np.array([(p.x, p.y) for p in faces[0].landmark], np.float64)[list(MEDIAPIPE_TO_IBUG)]
        return (points * [image.shape[1], image.shape[0]]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def default_detector() -> Detector:
    return Detector()


def photo_landmarks(photo: Path, image: np.ndarray, pts: Path | None = None, detect: bool = True) -> tuple[np.ndarray, str]:
    """The photo's landmarks and where they came from: ``pts`` if given, else ``<photo>.pts`` beside
    it, else detected (``detect``)."""
    pts = pts or photo.with_suffix(".pts")
    if pts.exists():
        return read_pts(pts), str(pts)
    if not detect:
        raise LandmarkError(f"{photo}: no landmark file {pts.name} beside it, and detection is off")
    return default_detector()(image, str(photo)), "detected (MediaPipe face mesh)"
