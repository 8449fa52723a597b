"""Metrics: dense vertex error after rigid alignment, landmark NME, per pose bin (AFLW2000-3D style).

- Dense error: mean distance (mm) between predicted and true face-region vertices after the
  rigid (rotation + translation, Kabsch) alignment that minimises it, so that pose errors do not
  count twice; the baseline predicts the mean face (zero identity and expression). Also reported
  with a similarity alignment (rotation, translation and one scale, as the NoW benchmark aligns),
  which leaves out the face's overall size: the framing of a face crop hides it, so what a single
  image shows of the size is only the proportions that the model ties to it.
- Landmark NME: mean 2D distance of the 68 landmarks divided by the landmark box size
  sqrt(w * h) (synthetic: profile views make the inter-ocular distance vanish, as in AFLW2000-3D),
  or by the inter-ocular distance (real photos with 300-W annotations).
- Pose bins by |yaw|: [0, 30), [30, 60), [60, 90] degrees.
"""

from __future__ import annotations

import numpy as np

POSE_BINS = ((0, 30), (30, 60), (60, 91))


def rigid_align(source: np.ndarray, target: np.ndarray, scale: bool = False) -> np.ndarray:
    """(B, V, 3) ``source`` rigidly moved onto ``target`` (least squares; Umeyama's scale if ``scale``)."""
    ms, mt = source.mean(1, keepdims=True), target.mean(1, keepdims=True)
    s, t = source - ms, target - mt
    u, _, vt = np.linalg.svd(np.einsum("bvi,bvj->bij", s, t))
    d = np.sign(np.linalg.det(np.einsum("bij,bjk->bik", u, vt)))
    fix = np.ones((len(d), 3))
    fix[:, 2] = d
    rotation = np.einsum("bij,bj,bjk->bik", u, fix, vt)  # maps s to t: s @ rotation
    moved = s @ rotation
    if scale:
        moved *= ((moved * t).sum((1, 2)) / (moved * moved).sum((1, 2)).clip(min=1e-12))[:, None, None]
    return moved + mt


def vertex_error(predicted: np.ndarray, truth: np.ndarray, scale: bool = False) -> np.ndarray:
    """(B,) mean per-vertex distance in mm after rigid (or, with ``scale``, similarity) alignment."""
    aligned = rigid_align(predicted.astype(np.float64), truth.astype(np.float64), scale)
    return np.linalg.norm(aligned - truth, axis=-1).mean(1)


def landmark_nme(predicted: np.ndarray, truth: np.ndarray, normalise: str = "box") -> np.ndarray:
    """(B,) mean landmark distance / (landmark box sqrt(w h), or inter-ocular distance)."""
    distance = np.linalg.norm(predicted - truth, axis=-1).mean(1)
    if normalise == "iod":
        scale = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)
    else:
        size = truth.max(1) - truth.min(1)
        scale = np.sqrt(size[:, 0] * size[:, 1])
    return distance / scale


def pose_bins(yaw_radians: np.ndarray, values: np.ndarray) -> dict:
    """Mean of ``values`` per |yaw| bin (and the sample count)."""
    yaw = np.abs(np.degrees(yaw_radians))
    out = {}
    for lo, hi in POSE_BINS:
        inside = (yaw >= lo) & (yaw < hi)
        out[f"{lo}-{min(hi, 90)}"] = (float(values[inside].mean()) if inside.any() else float("nan"), int(inside.sum()))
    return out


def summarise(columns: dict) -> dict:
    """Means over samples of per-sample ``columns`` (from evaluate_network): vertex errors of
    the prediction and the mean face, rigid then similarity-aligned, and their ratios; the ratios of
    the predicted identity alone (true expression) and the predicted expression alone (true
    identity), which tell which part of a network's error is which; landmark NME; per pose bin."""
    mean = {name: float(values.mean()) for name, values in columns.items()}
    baseline, yaw = mean["mean_face"], columns["yaw"]
    return {"samples": int(len(yaw)), "vertex_error_mm": mean["predicted"], "mean_face_error_mm": baseline,
            "error_ratio": mean["predicted"] / baseline,
            "similarity_error_mm": mean["predicted_similarity"],
            "similarity_error_ratio": mean["predicted_similarity"] / mean["mean_face_similarity"],
            "identity_error_ratio": mean["identity_only"] / baseline,
            "expression_error_ratio": mean["expression_only"] / baseline,
            **({"regressed_error_ratio": mean["regressed"] / baseline} if "regressed" in mean else {}),
            "landmark_nme": mean["landmark_nme"], "vertex_error_by_pose": pose_bins(yaw, columns["predicted"]),
            "landmark_nme_by_pose": pose_bins(yaw, columns["landmark_nme"])}


def evaluate_network(net, model, held_out, size: int, device, batch_size: int = 64) -> dict:
    """Dense vertex error (face region; rigid and similarity alignment), the mean face's, the error of
    the predicted identity (with the true expression) and of the predicted expression (with the true
    identity), landmark NME, per pose bin: see evaluation.summarise. The network is left in the mode
    it came in (a Reconstructor's stays in eval mode: batch statistics of one photo are no statistics)."""
    import torch

    with torch.no_grad():  # scoring: no graph
        return _evaluate_network(net, model, held_out, size, device, batch_size)


def _evaluate_network(net, model, held_out, size, device, batch_size):
    import torch

    from .network import FaceDecoder
    from .refine import final_parameters

    was_training = net.training
    net.eval()
    face = np.flatnonzero(model.region_vertices("face")) if "face" in model.region_names else np.arange(model.num_vertices)
    decoder = FaceDecoder(model, face).to(device)
    landmark_decoder = FaceDecoder(model, model.landmark_ids).to(device)
    point_decoder = FaceDecoder(model, net.point_ids.cpu().numpy()).to(device) if net.num_points else None
    loader = torch.utils.data.DataLoader(held_out, batch_size=batch_size, num_workers=0)
    columns = {}
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        inputs = (batch["image"], batch["previous"]) if "previous" in batch else (batch["image"],)  # a tracker's too
        regressed = {k: v.float() for k, v in net(*inputs).items()}
        p = final_parameters(regressed, batch["intrinsics"], size, point_decoder)
        truth = decoder(batch["identity"], batch["expression"]).cpu().numpy()
        faces = {"predicted": decoder(p["identity"], p["expression"]).cpu().numpy(),
                 "mean_face": np.broadcast_to(decoder.mean.cpu().numpy(), truth.shape),
                 "identity_only": decoder(p["identity"], batch["expression"]).cpu().numpy(),
                 "expression_only": decoder(batch["identity"], p["expression"]).cpu().numpy()}
        if point_decoder is not None:
            faces["regressed"] = decoder(regressed["identity"], regressed["expression"]).cpu().numpy()
        points = landmark_decoder.project(landmark_decoder(p["identity"], p["expression"]), p["rotation"],
                                          p["translation"], batch["intrinsics"])
        rows = {name: vertex_error(shape, truth) for name, shape in faces.items()}
        rows.update({f"{name}_similarity": vertex_error(faces[name], truth, scale=True) for name in ("predicted", "mean_face")})
        rows["landmark_nme"] = landmark_nme(points.cpu().numpy(), batch["landmarks"].cpu().numpy())
        rows["yaw"] = batch["rotation"][:, 0].cpu().numpy()
        for name, values in rows.items():
            columns.setdefault(name, []).append(values)
    net.train(was_training)
    return summarise({name: np.concatenate(values) for name, values in columns.items()})


def evaluate_synthetic(reconstructor, data, samples: int = 1000) -> dict:
    """Score a Reconstructor on a dataset's held-out split, with each sample's true camera."""
    import torch

    from .data import FaceTrainingSet, split_indices

    from ..data.dataset import ShardedDataset

    _, held = split_indices(len(ShardedDataset(data)))
    held_out = FaceTrainingSet(data, held[:samples], reconstructor.size, augment=False)
    return evaluate_network(reconstructor.net, reconstructor.model, held_out, reconstructor.size, torch.device("cpu"))


def evaluate_photos(reconstructor, folder, overlays=None) -> dict:
    """Landmark NME (inter-ocular) per annotated photo; the crop comes from the detected face that
    overlaps the annotated one (a photo may show several), else from the annotation's box (said per photo)."""
    from pathlib import Path

    from ..photo.landmarks import LandmarkError, default_detector, matching_face, read_pts
    from ..photo.fitter import photo_files, read_photo

    rows = {}
    for photo in photo_files([folder]):
        pts = photo.with_suffix(".pts")
        if not pts.exists():
            continue
        image, truth = read_photo(photo), read_pts(pts)
        try:
            detected = matching_face(default_detector().faces(image), truth)
        except LandmarkError:  # no MediaPipe
            detected = None
        source = "detection" if detected is not None else "annotation (the annotated face not detected)"
        result = reconstructor.reconstruct(image, truth if detected is None else detected)
        nme = float(landmark_nme(result.landmarks[None], truth[None], "iod")[0])
        rows[photo.name] = {"nme": nme, "yaw_deg": float(np.degrees(result.params.rotation[0])), "crop_from": source}
        if overlays:
            Path(overlays).mkdir(parents=True, exist_ok=True)
            reconstructor.overlay(result).save(Path(overlays) / f"{photo.stem}-overlay.png")
    return rows


def synthetic_report(r: dict) -> list[str]:
    """``evaluate_synthetic``'s metrics as the lines ``datagen evaluate`` prints."""
    lines = [f"synthetic ({r['samples']} held-out samples): vertex error {r['vertex_error_mm']:.2f} mm "
             f"after rigid alignment (mean face {r['mean_face_error_mm']:.2f} mm, ratio {r['error_ratio']:.2f}); "
             f"{r['similarity_error_mm']:.2f} mm after similarity alignment (ratio "
             f"{r['similarity_error_ratio']:.2f}); landmark NME {100 * r['landmark_nme']:.2f}% (of the landmark box)",
             f"  ratio with the predicted identity and the true expression {r['identity_error_ratio']:.2f}, "
             f"with the true identity and the predicted expression {r['expression_error_ratio']:.2f}"]
    if "regressed_error_ratio" in r:
        lines.append(f"  ratio of the regressed parameters before the fit to the dense points {r['regressed_error_ratio']:.2f}")
    for key in ("vertex_error_by_pose", "landmark_nme_by_pose"):
        lines.append(f"  {key}: " + ", ".join(f"yaw {b}: {v:.4g} (n={n})" for b, (v, n) in r[key].items()))
    return lines


def photo_report(rows: dict) -> list[str]:
    """``evaluate_photos``' rows as the lines ``datagen evaluate`` prints."""
    lines = [f"{name}: landmark NME {100 * row['nme']:.2f}% of the inter-ocular distance "
             f"(yaw {row['yaw_deg']:.0f} deg, crop from {row['crop_from']})" for name, row in rows.items()]
    if rows:
        lines.append(f"mean over {len(rows)} photos: {100 * np.mean([r['nme'] for r in rows.values()]):.2f}%")
    return lines
