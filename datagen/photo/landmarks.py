"""iBUG-68 landmarks of a photo: read from a 300-W ``.pts`` file, or detected.

Pixel convention (datagen's everywhere): origin at the image's top-left corner, pixel (i, j)'s
centre at (i + 0.5, j + 0.5). 300-W ``.pts`` files are 1-based (the first pixel's centre is
1.0), so a read point is shifted by -0.5.

Detection uses MediaPipe's full-range face detector and its face mesh (Apache-2.0; the weights
ship inside the pip package, so nothing is downloaded at run time): an optional extra,
``pip install 'datagen[detect]'``. The mesh's 468 points are turned into iBUG-68 with
``MEDIAPIPE_TO_IBUG``, derived on renders of ICT-FaceKit faces whose landmarks are known exactly (``scripts/derive_mediapipe_to_ibug.py``), so the
annotated photos stay an independent check.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import DatagenError
from ..images import crop_photo

MEDIAPIPE_TO_IBUG = (34, 227, 177, 215, 172, 150, 149, 148, 152, 377, 378, 379, 397, 435, 401, 447, 264, 70, 63,
                     105, 66, 107, 336, 296, 334, 293, 300, 168, 197, 195, 4, 240, 97, 2, 326, 460, 7, 160, 158, 155,
                     153, 144, 382, 385, 387, 249, 373, 380, 61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91, 77,
                     81, 13, 311, 375, 402, 14, 178)


DETECTED = "detected (MediaPipe face detector + face mesh)"  # where detected landmarks came from


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
    """MediaPipe -> iBUG-68 landmarks of the faces in a photo.

    Two stages, as MediaPipe's own face mesh pipeline but with its full-range detector: the
    full-range face detector (``model_selection=1``: faces up to 5 m from the camera, where the face
    mesh's built-in short-range detector, made for faces within 2 m, misses a face that is small in
    its photo) finds the face boxes; the face mesh then runs on a square crop around each box
    (``MESH_CROP`` times its larger side, resized to ``MESH_SIZE``) and its 468 points are mapped
    back into the photo.
    """

    MESH_CROP = 2.0
    MESH_SIZE = 256

    def __init__(self, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError:
            raise LandmarkError("landmark detection needs MediaPipe: pip install 'datagen[detect]' "
                                "(or give each photo's landmarks as an iBUG .pts file beside it)") from None
        with _quiet_native_logs():
            self._boxes = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                    min_detection_confidence=min_confidence)
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                         min_detection_confidence=min_confidence)
            # The graphs open their calculators (which log) on threads of their own after start-up:
            # one frame through each waits for that inside the quiet window.
            blank = np.full((64, 64, 3), 128, np.uint8)
            self._boxes.process(blank)
            self._mesh.process(blank)

    def faces(self, image: np.ndarray) -> list[np.ndarray]:
        """(68, 2) float32 landmarks of every face found in an (H, W, 3) uint8 RGB image, largest first."""
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        found = []
        with _quiet_native_logs():
            detections = self._boxes.process(image).detections or []
        for detection in detections:
            box = detection.location_data.relative_bounding_box
            side = self.MESH_CROP * max(box.width * w, box.height * h)
            x0 = (box.xmin + box.width / 2) * w - side / 2
            y0 = (box.ymin + box.height / 2) * h - side / 2
            points = self._mesh_points(crop_photo(image, (x0, y0, side), self.MESH_SIZE))
            if points is not None:
                found.append(points * side + [x0, y0])
        if not found:  # a face filling the photo: the face mesh's own detector is made for those
            points = self._mesh_points(image)
            if points is not None:
                found.append(points * [w, h])
        return [f.astype(np.float32) for f in _distinct_faces(found)]

    def _mesh_points(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) iBUG points of the face mesh's one face, as fractions of the image's width and height."""
        with _quiet_native_logs():
            faces = self._mesh.process(np.ascontiguousarray(image)).multi_face_landmarks or []
        if not faces:
            return None
        return np.array([(p.x, p.y) for p in faces[0].landmark], np.float64)[list(MEDIAPIPE_TO_IBUG)]

    def __call__(self, image: np.ndarray, name: str = "photo") -> np.ndarray:
        """(68, 2) float32 landmarks of the one face in an (H, W, 3) uint8 RGB image."""
        faces = self.faces(image)
        if not faces:
            raise LandmarkError(f"{name}: no face found")
        if len(faces) > 1:
            raise LandmarkError(f"{name}: {len(faces)} faces found; datagen fits one face per photo "
                                f"(crop it, or give its landmarks as a .pts file)")
        return faces[0]


@contextlib.contextmanager
def _quiet_native_logs():
    """MediaPipe's C++ graph (TFLite, absl logging) writes INFO and WARNING lines straight to file
    descriptor 2, which no Python setting reaches: point it at /dev/null while the graph runs."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _distinct_faces(faces: list[np.ndarray], overlap: float = 0.5) -> list[np.ndarray]:
    """Largest first, leaving out a face whose landmark box overlaps a larger one's by more than ``overlap`` (IoU)."""
    boxes = [_box(f) for f in faces]
    order = sorted(range(len(faces)), key=lambda i: -np.prod(boxes[i][1] - boxes[i][0]))
    kept = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= overlap for j in kept):
            kept.append(i)
    return [faces[i] for i in kept]


def _box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points.min(0), points.max(0)


def _iou(a, b) -> float:
    """Intersection over union of two (min corner, max corner) boxes."""
    inner = np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0, None))
    union = np.prod(a[1] - a[0]) + np.prod(b[1] - b[0]) - inner
    return float(inner / union) if union > 0 else 0.0


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
    return default_detector()(image, str(photo)), DETECTED


def photo_faces(photo: Path, image: np.ndarray, pts: Path | None = None) -> tuple[list[np.ndarray], str]:
    """Landmarks of every face of a photo, largest first, and where they came from: ``pts`` if
    given, else ``<photo>.pts`` beside it (one face), else detected (none found: LandmarkError)."""
    pts = pts or photo.with_suffix(".pts")
    if pts.exists():
        return [read_pts(pts)], str(pts)
    faces = default_detector().faces(image)
    if not faces:
        raise LandmarkError(f"{photo}: no face found")
    return faces, DETECTED


def matching_face(faces: list[np.ndarray], landmarks: np.ndarray, overlap: float = 0.3) -> np.ndarray | None:
    """The face in ``faces`` whose landmark box overlaps that of ``landmarks`` most (IoU above ``overlap``), else None."""
    scores = [_iou(_box(f), _box(landmarks)) for f in faces]
    return faces[int(np.argmax(scores))] if scores and max(scores) > overlap else None
