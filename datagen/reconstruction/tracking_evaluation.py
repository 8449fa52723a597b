"""Score the tracker on a video dataset's held-out clips, next to CoarseNet applied frame by frame.

Per frame: the dense vertex error of the face region after rigid alignment (mm) and the landmark
error (pixels; NME over the landmark box). Over a clip: the temporal jitter, the mean distance
between the predicted and the true landmarks' second differences, x(t+1) - 2 x(t) + x(t-1), in
pixels: a steady reconstruction of a steady truth scores 0 however far off it is, a jittery one
scores its frame-to-frame noise. The tracker sees the true landmarks of a clip's first frame only
(and the clip's camera); CoarseNet each frame's true landmarks (its crops) and camera: a detector's
perfect crop at every frame, an advantage the tracker does not have.
"""

from __future__ import annotations

import numpy as np

from ..data.dataset import ShardedDataset
from ..errors import DatagenError
from .data import split_indices
from .evaluation import landmark_nme, vertex_error
from .tracking import frame_of


FIELDS = ["image", "landmarks_2d", "landmark_visible", "params/identity", "params/expression", "params/rotation",
          "params/translation", "params/intrinsics"]


def evaluate_tracking(tracker, data, clips: int = 100, log=None, model_dir: str | None = None) -> dict:
    """{"clips", "frames", "tracker": metrics, "coarse": metrics} over the first ``clips`` held-out clips."""
    dataset = ShardedDataset(data, fields=FIELDS, model_dir=model_dir)
    if dataset.frames < 2:
        raise DatagenError(f"{data} holds stills: a tracker is scored on a video dataset's clips")
    _, held = split_indices(len(dataset))
    model = tracker.model
    face = np.flatnonzero(model.region_vertices("face")) if "face" in model.region_names else np.arange(model.num_vertices)
    rows = {"tracker": [], "coarse": []}
    for n, c in enumerate(held[:clips]):
        clip = dataset[int(c)]
        frames = [frame_of(clip, t) for t in range(dataset.frames)]
        truth = dataset.vertices(int(c))[:, face]
        images = [f["image"] for f in frames]
        tracked = list(tracker.track(images, frames[0]["landmarks_2d"], frames[0]["params/intrinsics"]))
        coarse = [tracker.first(f["image"], f["landmarks_2d"], f["params/intrinsics"]) for f in frames]
        for name, results in (("tracker", tracked), ("coarse", coarse)):
            rows[name].append(_clip_metrics(results, frames, truth, face))
        if log and (n + 1) % 20 == 0:
            log(f"{n + 1} of {min(clips, len(held))} held-out clips scored")
    summary = {name: {key: float(np.mean([r[key] for r in clip_rows])) for key in clip_rows[0]}
               for name, clip_rows in rows.items()}
    return {"clips": len(rows["tracker"]), "frames": dataset.frames, **summary}


def _clip_metrics(results, frames, truth, face) -> dict:
    predicted = np.stack([r.vertices[face] for r in results])
    landmarks = np.stack([r.landmarks for r in results])
    true_landmarks = np.stack([f["landmarks_2d"] for f in frames]).astype(np.float64)
    visible = np.stack([f["landmark_visible"] for f in frames])
    distance = np.linalg.norm(landmarks - true_landmarks, axis=-1)
    second = lambda x: x[2:] - 2 * x[1:-1] + x[:-2]  # noqa: E731
    jitter = np.linalg.norm(second(landmarks) - second(true_landmarks), axis=-1)
    return {"vertex_error_mm": float(vertex_error(predicted, truth).mean()),
            "landmark_error_px": float(distance[visible].mean()),
            "landmark_nme": float(landmark_nme(landmarks, true_landmarks).mean()),
            "jitter_px": float(jitter.mean()),
            "true_motion_px": float(np.linalg.norm(np.diff(true_landmarks, axis=0), axis=-1).mean())}


def tracking_report(r: dict) -> list[str]:
    """``evaluate_tracking``'s metrics as the lines ``datagen evaluate`` prints."""
    lines = [f"tracking ({r['clips']} held-out clips of {r['frames']} frames; the landmarks move "
             f"{r['tracker']['true_motion_px']:.2f} px a frame):"]
    for name, label in (("tracker", "tracker (first frame: CoarseNet)"), ("coarse", "CoarseNet frame by frame")):
        m = r[name]
        lines.append(f"  {label:<34} vertex error {m['vertex_error_mm']:.2f} mm, landmarks {m['landmark_error_px']:.2f} px "
                     f"(NME {100 * m['landmark_nme']:.2f}%), jitter {m['jitter_px']:.3f} px")
    return lines
