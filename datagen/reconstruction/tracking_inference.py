"""Video -> per-frame 3D faces with the tracking network: ``datagen reconstruct clip.mp4|frames/ --checkpoint
TRACK/best.pt -o meshes/``.

The first frame is reconstructed by the CoarseNet the tracker's checkpoint carries, from detected
(or given) landmarks, as a photo is; every later frame by the tracker from the previous frame's
reconstruction, cropped around its projected landmarks (no detector). The camera is the first
frame's assumed one (``inference.assumed_crop_intrinsics``) for the whole video, so the meshes of
all frames are in one camera space: frame-to-frame motion is the head's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..camera import crop_intrinsics, project
from ..errors import DatagenError
from ..images import crop_photo
from ..photo.fitter import photo_files, read_photo
from .data import face_crop_box, network_input
from .inference import Reconstruction, Reconstructor, load_checkpoint
from .refine import final_parameters
from .tracking import TrackerNet, previous_vector

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")


class Tracker:
    """A tracker checkpoint's network and its CoarseNet (``coarse``), ready to track frame sequences."""

    def __init__(self, checkpoint: str | Path, model_dir: str | None = None):
        state = load_checkpoint(checkpoint)
        if state.get("kind") != "tracker":
            raise DatagenError(f"{checkpoint} is not a tracker's checkpoint (train one with 'datagen train --tracker')")
        self.coarse = Reconstructor(checkpoint, model_dir, state=state["coarse"])
        self.model, self.size = self.coarse.model, self.coarse.size
        self.net = TrackerNet(self.model.num_identity, self.model.num_expression, self.coarse.config["width"])
        self.net.load_state_dict(state["net"])
        self.net.eval()

    def first(self, image: np.ndarray, landmarks: np.ndarray, intrinsics: np.ndarray | None = None) -> Reconstruction:
        """Frame 0: CoarseNet from ``landmarks`` (68, 2); ``intrinsics``: the video's camera (fx, fy, cx, cy in
        its pixels) if known, else the assumed one."""
        if intrinsics is None:
            return self.coarse.reconstruct(image, landmarks)
        box = face_crop_box(landmarks)
        crop = crop_photo(image, box, self.size)
        params = self.coarse.predict(crop[None], crop_intrinsics(intrinsics, box, self.size).astype(np.float32))[0]
        return self._result(params, crop, box)

    @torch.no_grad()
    def next(self, image: np.ndarray, previous: Reconstruction) -> Reconstruction:
        """The next frame, from the previous frame's reconstruction."""
        box = face_crop_box(previous.landmarks)
        crop = crop_photo(image, box, self.size)
        camera = video_intrinsics(previous)
        intrinsics = crop_intrinsics(camera, box, self.size).astype(np.float32)
        p = previous.params
        vector = previous_vector(p.identity, p.expression, p.rotation, p.translation, intrinsics, self.size)
        predicted = self.net(torch.from_numpy(network_input(crop[None])), torch.from_numpy(vector[None]))
        fitted = final_parameters(predicted, torch.from_numpy(intrinsics[None]), self.size, None)
        values = {k: v.numpy()[0] for k, v in {**predicted, **fitted}.items()}
        params = type(p)(sample_index=-1, identity=values["identity"], expression=values["expression"],
                         rotation=values["rotation"], translation=values["translation"], intrinsics=intrinsics,
                         light_sh=values["light"].reshape(9, 3), appearance=p.appearance, background=p.background)
        return self._result(params, crop, box)

    def _result(self, params, crop, box) -> Reconstruction:
        vertices = self.coarse.camera_vertices(params)
        fitted = project(vertices[self.model.landmark_ids][None], params.intrinsics[None])[0]
        return Reconstruction(params, vertices, fitted * box[2] / self.size + np.asarray(box[:2]), crop, box)

    def track(self, frames, landmarks: np.ndarray, intrinsics: np.ndarray | None = None):
        """Reconstructions of a sequence of (H, W, 3) uint8 frames, the first's face given by ``landmarks``."""
        previous = None
        for image in frames:
            previous = self.first(image, landmarks, intrinsics) if previous is None else self.next(image, previous)
            yield previous


def video_intrinsics(result: Reconstruction) -> np.ndarray:
    """The video's camera (in its pixels) from a reconstruction's crop camera and box."""
    fx, fy, cx, cy = result.params.intrinsics
    x0, y0, side = result.box
    k = side / result.crop.shape[0]
    return np.array([fx * k, fy * k, cx * k + x0, cy * k + y0])


def read_frames(source: str | Path):
    """(H, W, 3) uint8 frames of a video file (PyAV, the extra ``[video]``) or of a folder of images
    (in name order)."""
    source = Path(source)
    if source.is_dir():
        files = photo_files([source])
        if not files:
            raise DatagenError(f"{source}: no images (.png, .jpg, ...) to read as frames")
        for path in files:
            yield read_photo(path)
        return
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise DatagenError(f"{source}: not a video file ({', '.join(VIDEO_SUFFIXES)}) nor a folder of frames")
    try:
        import av
    except ImportError:
        raise DatagenError("reading video files needs PyAV: pip install 'datagen[video]' (or give a folder of frames)") from None
    try:
        with av.open(str(source)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise DatagenError(f"{source}: unreadable video ({e})") from None


@dataclass
class TrackedVideo:
    frames: int
    folder: Path
    landmark_source: str


def reconstruct_video(source, tracker: Tracker, output: str | Path, landmarks: np.ndarray | None = None,
                      suffix: str = ".obj", log=print) -> TrackedVideo:
    """Track a video file or frame folder; write ``output``/frame-00000.obj (and .json) per frame and an
    overlay picture every 10 frames. The first frame's face: ``landmarks`` if given, else detected."""
    from ..data.meshes import write_mesh
    from .inference import write_params

    out = Path(output)
    frames = read_frames(source)
    try:
        first = next(frames)  # an unreadable source fails here, before anything is written
    except StopIteration:
        raise DatagenError(f"{source}: no frames") from None
    source_of_landmarks = "given"
    if landmarks is None:
        from ..photo.landmarks import default_detector

        faces = default_detector().faces(first)
        if not faces:
            raise DatagenError(f"{source}: no face found in the first frame (give its landmarks with --landmarks)")
        landmarks, source_of_landmarks = faces[0], "detected"
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for t, result in enumerate(tracker.track(_chain(first, frames), landmarks)):
        stem = out / f"frame-{t:05d}"
        write_mesh(stem.with_suffix(suffix), result.vertices, tracker.model)
        write_params(stem.with_suffix(".json"), result)
        if t % 10 == 0:
            tracker.coarse.overlay(result).save(out / f"frame-{t:05d}-overlay.png")
        count = t + 1
        if count % 50 == 0:
            log(f"{count} frames tracked")
    return TrackedVideo(frames=count, folder=out, landmark_source=source_of_landmarks)


def _chain(first, rest):
    yield first
    yield from rest
