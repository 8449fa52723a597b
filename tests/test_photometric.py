"""The photometric step of `datagen fit` on synthetic photos whose 3D shape is known."""

import numpy as np
import pytest

from datagen.camera import crop_intrinsics, to_camera
from datagen.images import crop_photo
from datagen.photo.fitter import PhotoFitter, crop_box
from datagen.photo.fitting import fit_landmarks
from datagen.photo.landmarks import interocular_distance
from datagen.photo.face_region import face_region, outline_landmarks
from datagen.run.generator import FaceGenerator
from datagen.spec import parse_spec
from datagen.synth.render import Renderer
from conftest import SHARED

SIZE = 512
PHOTOS = 8
LANDMARK_NOISE_PX = 2.5  # an annotator's or a detector's scatter, ~2% of the inter-ocular distance


@pytest.fixture(scope="module")
def synthetic_photos(ict_model, ctx):
    """Our renders on photo backgrounds (../shared/faces), yaw within 30 degrees, annotated as 300-W
    annotates a photo (the jaw line on the outline where the face turns away), with scatter."""
    spec = parse_spec(f'''name = "known-shape"
seed = 3
num_samples = {PHOTOS}
[model]
name = "ict-facekit"
[render]
width = {SIZE}
height = {SIZE}
supersample = 1
[sampling.pose]
yaw_range_deg = [-30.0, 30.0]
yaw_std_deg = 15.0
[sampling.background]
kind = "images"
images_dir = "{SHARED / 'faces'}"
''', "<known shape>")
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, SIZE, SIZE, supersample=1, ctx=ctx))
    images = generator.generate(range(PHOTOS))["image"]
    rng = np.random.default_rng(0)
    photos = []
    for i, image in enumerate(images):
        truth = generator.sample_params(i)
        landmarks = outline_landmarks(ict_model, truth) + rng.normal(0, LANDMARK_NOISE_PX, (68, 2))
        photos.append((image, landmarks, truth))
    return photos


def _camera_vertices(model, p, ids):
    return to_camera(model.vertices(p.identity, p.expression)[ids].astype(np.float64), model.pivot, p.rotation,
                     p.translation)


def _aligned_error_mm(fitted: np.ndarray, truth: np.ndarray) -> float:
    """Mean vertex distance after a similarity alignment (rotation, translation, scale: as NoW and
    Feng et al. 2018 score single-image reconstructions; a photo leaves a face's size and distance
    ambiguous)."""
    a, b = fitted - fitted.mean(0), truth - truth.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1, 1, d]) @ vt
    scale = (s * [1, 1, d]).sum() / (a ** 2).sum()
    return float(np.linalg.norm(scale * a @ rotation - b, axis=1).mean())


def _pixel_error(model, p, ids, intrinsics, truth_uv):
    camera = _camera_vertices(model, p, ids)
    fx, fy, cx, cy = intrinsics
    uv = np.stack([fx * camera[:, 0] / -camera[:, 2] + cx, cy - fy * camera[:, 1] / -camera[:, 2]], 1)
    return float(np.linalg.norm(uv - truth_uv, axis=1).mean())


def test_the_photometric_step_recovers_the_shape_better_than_the_landmark_fit(synthetic_photos, ict_model, ctx):
    fitter = PhotoFitter(ict_model, ctx=ctx)
    ids = face_region(ict_model).ids  # the face: skin, nose, lips
    before_mm, after_mm, before_px, after_px = [], [], [], []
    for k, (image, landmarks, truth) in enumerate(synthetic_photos):
        box = crop_box(landmarks)
        scale = SIZE / box[2]
        crop = crop_photo(image, box, SIZE)
        intrinsics = crop_intrinsics(truth.intrinsics, box, SIZE).astype(np.float32)
        fit = fit_landmarks(ict_model, (landmarks - box[:2]) * scale, SIZE, SIZE, intrinsics)
        refined, report = fitter.refine(crop, fit)

        true_vertices = _camera_vertices(ict_model, truth, ids)
        truth_uv = np.stack([intrinsics[0] * true_vertices[:, 0] / -true_vertices[:, 2] + intrinsics[2],
                             intrinsics[3] - intrinsics[1] * true_vertices[:, 1] / -true_vertices[:, 2]], 1)
        before_mm.append(_aligned_error_mm(_camera_vertices(ict_model, fit, ids), true_vertices))
        after_mm.append(_aligned_error_mm(_camera_vertices(ict_model, refined, ids), true_vertices))
        before_px.append(_pixel_error(ict_model, fit, ids, intrinsics, truth_uv))
        after_px.append(_pixel_error(ict_model, refined, ids, intrinsics, truth_uv))
        print(f"photo {k}: {report.describe()}; dense error {before_mm[-1]:.2f} -> {after_mm[-1]:.2f} mm, "
              f"{before_px[-1]:.2f} -> {after_px[-1]:.2f} px; {report.seconds:.2f} s")
        assert report.photometric_error_after < report.photometric_error_before
        assert report.compared_vertices > 1000
        assert np.isclose(refined.error_iod, report.landmark_error_after)
        assert np.isclose(refined.error_iod, np.linalg.norm(refined.fitted_landmarks - refined.landmarks, axis=1).mean()
                          / interocular_distance(refined.landmarks))
    mm, px = (np.mean(before_mm), np.mean(after_mm)), (np.mean(before_px), np.mean(after_px))
    print(f"mean over {len(before_mm)} photos: {mm[0]:.2f} -> {mm[1]:.2f} mm, {px[0]:.2f} -> {px[1]:.2f} px")
    assert mm[1] < 0.93 * mm[0] and px[1] < 0.85 * px[0]  # measured: 3.07 -> 2.73 mm, 4.65 -> 3.41 px
    assert sum(a < b for a, b in zip(after_px, before_px)) >= 0.75 * len(before_px)


def test_a_photo_that_shows_too_little_skin_is_fitted_to_its_landmarks_alone(synthetic_photos, ict_model, ctx):
    fitter = PhotoFitter(ict_model, ctx=ctx)
    image, landmarks, truth = synthetic_photos[0]
    box = crop_box(landmarks)
    crop = crop_photo(np.zeros_like(image), box, SIZE)  # black: every pixel clipped
    fit = fit_landmarks(ict_model, (landmarks - box[:2]) * SIZE / box[2], SIZE, SIZE,
                        crop_intrinsics(truth.intrinsics, box, SIZE).astype(np.float32))
    refined, report = fitter.refine(crop, fit)
    assert report.photometric_error_before is None and report.compared_vertices == 0
    assert "no skin to compare" in report.describe()
    assert report.landmark_error_after <= report.landmark_error_before + 0.002
