import dataclasses

import numpy as np

from datagen.synth.sampling import rotation_matrix, sample_face
from datagen.spec import parse_spec


def _spec(extra=""):
    return parse_spec('name = "s"\nseed = 3\n' + extra)


def test_same_seed_and_index_give_identical_params(ict_model):
    a, b = sample_face(_spec(), ict_model, 41), sample_face(_spec(), ict_model, 41)
    for f in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name))
    c = sample_face(_spec(), ict_model, 42)
    assert not np.array_equal(a.identity, c.identity)


def test_changing_one_prior_leaves_other_parts_unchanged(ict_model):
    a = sample_face(_spec(), ict_model, 5)
    b = sample_face(_spec("[sampling.expression]\nneutral_fraction = 1.0\n"), ict_model, 5)
    np.testing.assert_array_equal(a.identity, b.identity)
    np.testing.assert_array_equal(a.rotation, b.rotation)
    assert not b.expression.any()


def test_priors_are_respected(ict_model):
    spec = _spec("[sampling.pose]\nyaw_range_deg = [-30, 60]\n[sampling.identity]\ntruncation = 1.5\n")
    draws = [sample_face(spec, ict_model, i) for i in range(400)]
    yaw = np.degrees([d.rotation[0] for d in draws])
    assert yaw.min() >= -30 and yaw.max() <= 60 and yaw.std() > 10
    identity = np.stack([d.identity for d in draws])
    assert np.abs(identity).max() <= 1.5 + 1e-6
    expression = np.stack([d.expression for d in draws])
    assert expression.min() >= 0 and expression.max() <= 1
    neutral = (expression == 0).all(1).mean()
    assert 0.08 < neutral < 0.25  # neutral_fraction 0.15
    names = ict_model.expression_names
    left, right = expression[:, names.index("mouthSmile_L")], expression[:, names.index("mouthSmile_R")]
    both = (left > 0) & (right > 0)
    assert both.sum() > 0.6 * ((left > 0) | (right > 0)).sum()  # pairs mostly fire together


def test_rotation_convention():
    yaw = rotation_matrix([np.pi / 2, 0, 0]) @ [0, 0, 1]
    np.testing.assert_allclose(yaw, [1, 0, 0], atol=1e-12)  # positive yaw: face turns to the image's right
    pitch = rotation_matrix([0, np.pi / 2, 0]) @ [0, 0, 1]
    np.testing.assert_allclose(pitch, [0, -1, 0], atol=1e-12)  # positive pitch: face turns down


def test_face_lands_where_the_camera_prior_says(ict_model):
    spec = _spec("[sampling.camera]\ncenter_jitter = 0.0\nprincipal_point_jitter = 0.0\nface_fraction = [0.5, 0.5]\n"
                 "[sampling.pose]\nyaw_std_deg = 0.0\nyaw_range_deg = [0, 0]\npitch_range_deg = [0, 0]\nroll_range_deg = [0, 0]\n")
    from datagen.camera import project

    p = sample_face(spec, ict_model, 0)
    lm = ict_model.mean[ict_model.landmark_ids] - ict_model.pivot + p.translation
    uv = project(lm[None], p.intrinsics[None])[0]
    np.testing.assert_allclose(uv.mean(0), [112, 112], atol=0.5)
    assert abs(np.ptp(uv[:, 1]) / 224 - 0.5) < 0.02
