"""The AFLW2000-3D protocol on cases with known answers, and both of its folder layouts."""

import shutil

import numpy as np
import pytest

from datagen.reconstruction.benchmark import box_nme, read_aflw2000, summarise, yaw_bin
from conftest import SHARED

AFLW = SHARED / "aflw2000"


def _points(seed=0):
    return np.random.default_rng(seed).uniform(100, 300, (68, 2)).astype(np.float32)


def test_the_truth_scores_zero_and_a_known_shift_its_known_nme():
    truth = _points()
    assert box_nme(truth, truth) == 0.0
    w, h = truth.max(0) - truth.min(0)
    assert box_nme(truth + [3.0, 4.0], truth) == pytest.approx(5.0 / np.sqrt(w * h), rel=1e-6)


def test_yaw_bins_and_the_mean_of_the_bin_means():
    assert [yaw_bin(y) for y in (0, -30, 30.01, 60, -60.5, 95)] == ["0-30", "0-30", "30-60", "30-60", "60-90", "60-90"]
    rows = [{"yaw_bin": yaw_bin(y), "nme": v} for y, v in ((10, 0.1), (-45, 0.2), (75, 0.4), (20, 0.3))]
    s = summarise(rows, "nme")
    assert s["bins"] == {"0-30": (pytest.approx(0.2), 2), "30-60": (0.2, 1), "60-90": (0.4, 1)}
    assert s["mean_of_bins"] == pytest.approx((0.2 + 0.2 + 0.4) / 3) and s["mean"] == pytest.approx(0.25)
    only_frontal = summarise(rows[:1] + rows[3:], "nme")  # empty bins do not count
    assert only_frontal["mean_of_bins"] == pytest.approx(0.2) and only_frontal["bins"]["60-90"][1] == 0


def test_the_pts_layout_is_read_in_datagens_pixel_convention():
    images = read_aflw2000(AFLW)
    assert [i.name for i in images][:2] == ["image00202.jpg", "image00302.jpg"] and len(images) == 8
    first = images[0]
    assert first.yaw_deg == pytest.approx(-7.64)
    raw = np.array([[float(v) for v in line.split()] for line in (AFLW / "image00202.pts").read_text().splitlines()[3:71]])
    np.testing.assert_allclose(first.landmarks, raw - 0.5, atol=1e-4)  # 1-based .pts centres -> datagen's +0.5


def test_the_published_mat_layout_gives_the_same_points(tmp_path):
    from scipy.io import savemat

    pts_layout = read_aflw2000(AFLW)[0]
    shutil.copy(AFLW / "image00202.jpg", tmp_path / "image00202.jpg")
    pixel_index = pts_layout.landmarks.astype(np.float64) - 0.5  # AFLW2000-3D: the first pixel's centre at 0
    pt3d = np.vstack([pixel_index.T, np.zeros((1, 68))])
    savemat(tmp_path / "image00202.mat", {"pt3d_68": pt3d, "Pose_Para": [[0.1, np.radians(-7.64), 0.0, 1, 2, 3, 0.5]]})
    (mat_layout,) = read_aflw2000(tmp_path)
    np.testing.assert_allclose(mat_layout.landmarks, pts_layout.landmarks, atol=1e-4)
    assert mat_layout.yaw_deg == pytest.approx(-7.64)
