"""A clip's frames: the first is the still sample, the others follow it by stochastic processes.

Within a clip the identity, material, fine detail, eye colour, props, background and capture
settings stay; what moves (``[video]``, spec/video.py; README "Video clips" gives each default's
source or says it is an assumption):

- head rotation: an Ornstein-Uhlenbeck (OU) angular velocity per axis, integrated, reflecting at
  the pose prior's ranges (a photo-realistic clip's: the fitted pose plus ``[photoreal]``'s change ranges);
- camera: the distance scaled by exp(OU) (the face keeps its place in the image and changes size),
  and shake, an OU offset of the principal point (the whole picture, background included, shifts);
- expression: new targets from ``[sampling.expression]`` at a Poisson rate (their eyeBlink weights
  zeroed: blinks are the blink process's), each reached over an onset time along a smoothstep (onset,
  hold until the next target; a neutral target is the offset);
- blinks: Poisson events, each closing in a third of its duration and reopening in two thirds;
- gaze: saccades to new directions at a Poisson rate, each over ``gaze_shift_s``;
- light: turns about the camera's vertical axis (OU angular velocity) and its brightness drifts (exp(OU)).

Every process starts at the still's value, so frame 0 is the still sample exactly (``frames = 1``
is the still pipeline), and every draw of frame t comes from ``frame_rng(seed, clip, t, stream)``:
a frame regenerates alone by replaying the clip's cheap parameter processes up to it.
A photo-realistic clip keeps the photo's camera (no distance change, no shake): the photo behind the
face is warped to follow the head, as for stills.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ..camera import sh_basis
from ..models.morphable_model import MorphableModel
from ..spec import JobSpec
from .sampling import FaceParams, _expression_plan, _gaze, frame_rng, sample_expression


def clip_params(spec: JobSpec, model: MorphableModel, first: FaceParams, photos=None) -> list[FaceParams]:
    """The K frames of the clip that starts with the still sample ``first`` (``FaceGenerator.sample_params``);
    ``photos``: the job's fitted photos (a photo-realistic clip's pose bounds are its photo's)."""
    v = spec.video
    if v.frames == 1:
        return [first]
    draws = Draws(spec.seed, first.sample_index, v.frames)
    photoreal = bool(spec.photoreal.library)
    rotation = head_path(draws, v, np.degrees(first.rotation.astype(np.float64)), pose_bounds(spec, first, photos))
    scale = np.ones(v.frames) if photoreal else np.exp(ou_offsets(draws, "camera_motion", 0, v.distance_std,
                                                                  v.distance_time_constant_s, v.dt))
    shake_px = np.zeros((v.frames, 2)) if photoreal else ou_offsets(
        draws, "camera_motion", 1, v.shake_std * spec.render.height, v.shake_time_constant_s, v.dt, size=2)
    expression = expression_path(draws, spec, model, first.expression)
    light = light_path(draws, v, first.light_sh)
    frames = [first]
    for t in range(1, v.frames):
        intrinsics = first.intrinsics.astype(np.float64)
        intrinsics[2:] += shake_px[t]
        frames.append(dataclasses.replace(
            first, frame=t, rotation=np.radians(rotation[t]).astype(np.float32),
            translation=(first.translation * scale[t]).astype(np.float32), intrinsics=intrinsics.astype(np.float32),
            expression=expression[t].astype(np.float32), light_sh=light[t].astype(np.float32)))
    return frames


class Draws:
    """Frame t's generator of a stream, each made once (``frame_rng``)."""

    def __init__(self, seed: int, clip: int, frames: int):
        self.seed, self.clip, self.frames = seed, clip, frames
        self._normals: dict = {}

    def normals(self, stream: str, t: int) -> np.ndarray:
        """Frame t's 8 standard normals of a stream (the innovations of its processes)."""
        key = (stream, t)
        if key not in self._normals:
            self._normals[key] = frame_rng(self.seed, self.clip, t, stream).standard_normal(8)
        return self._normals[key]

    def rng(self, stream: str, t: int) -> np.random.Generator:
        return frame_rng(self.seed, self.clip, t, stream)


def ou_states(draws: Draws, stream: str, column: int, std: float, tau: float, dt: float, size: int = 1) -> np.ndarray:
    """(K, size) a stationary Ornstein-Uhlenbeck process sampled every ``dt``: x0 ~ N(0, std²),
    x_t = a x_(t-1) + std sqrt(1 - a²) z_t with a = exp(-dt / tau) (the exact discretisation).
    ``column`` picks which of a stream's processes this is (its own normals of each frame's draw)."""
    a = np.exp(-dt / tau)
    z = np.stack([draws.normals(stream, t)[column * size:(column + 1) * size] for t in range(draws.frames)])
    x = np.empty_like(z)
    x[0] = std * z[0]
    for t in range(1, len(z)):
        x[t] = a * x[t - 1] + std * np.sqrt(1 - a * a) * z[t]
    return x if size > 1 else x[:, 0]


def ou_offsets(draws, stream, column, std, tau, dt, size: int = 1) -> np.ndarray:
    """An Ornstein-Uhlenbeck drift that starts at 0 (frame 0 is the still) and tends to N(0, std²):
    ``ou_states``' steps from x0 = 0."""
    a = np.exp(-dt / tau)
    z = np.stack([draws.normals(stream, t)[column * size:(column + 1) * size] for t in range(draws.frames)])
    x = np.zeros_like(z)
    for t in range(1, len(z)):
        x[t] = a * x[t - 1] + std * np.sqrt(1 - a * a) * z[t]
    return x if size > 1 else x[:, 0]


def pose_bounds(spec: JobSpec, first: FaceParams, photos) -> np.ndarray:
    """(3, 2) degrees: where the head may turn (yaw, pitch, roll)."""
    if spec.photoreal.library:
        fitted = np.degrees(np.asarray(photos[int(first.background[1])].fit.rotation, np.float64))
        p = spec.photoreal
        change = np.array([p.yaw_change_deg, p.pitch_change_deg, p.roll_change_deg])
        return fitted[:, None] + change
    pose = spec.sampling.pose
    return np.array([pose.yaw_range_deg, pose.pitch_range_deg, pose.roll_range_deg], np.float64)


def head_path(draws: Draws, v, start_deg: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(K, 3) degrees: OU angular velocity integrated from ``start_deg``, reflected at ``bounds``."""
    velocity = np.stack([ou_states(draws, "head_motion", axis, std, v.head_time_constant_s, v.dt)
                         for axis, std in enumerate(v.head_speed_std_deg)], 1)
    lo, hi = bounds[:, 0], bounds[:, 1]
    angles = np.empty((draws.frames, 3))
    angles[0] = start_deg
    sign = np.ones(3)
    for t in range(1, draws.frames):
        a = angles[t - 1] + sign * velocity[t - 1] * v.dt
        over, under = a > hi, a < lo
        a = np.where(over, 2 * hi - a, np.where(under, 2 * lo - a, a))
        sign = np.where(over | under, -sign, sign)
        angles[t] = np.clip(a, lo, hi)
    return angles


# --- expression, blinks, gaze


def channel_groups(model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    """(blink channels, gaze channels) of a blendshape model; both empty for a PCA model."""
    if model.expression_kind == "pca":
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    names = list(model.expression_names)
    blink = _expression_plan(tuple(names))["blink"] or ()
    gaze = [i for i, n in enumerate(names) if n.startswith("eyeLook")]
    return np.array([names.index(n) for n in blink], np.int64), np.array(gaze, np.int64)


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class Transition:
    """A value moving from ``start`` to ``target`` along a smoothstep over ``frames`` frames from frame ``t0``."""

    def __init__(self, value: np.ndarray):
        self.start = self.target = value
        self.t0, self.frames = 0, 1.0

    def at(self, t: int) -> np.ndarray:
        return self.start + (self.target - self.start) * smoothstep((t - self.t0) / self.frames)

    def retarget(self, t: int, target: np.ndarray, frames: float) -> None:
        self.start, self.target, self.t0, self.frames = self.at(t), target, t, max(frames, 1e-6)


def expression_path(draws: Draws, spec: JobSpec, model: MorphableModel, first: np.ndarray) -> np.ndarray:
    """(K, K_ex) weights: the expression process, blinks on top, gaze by saccades (module docstring)."""
    v, fps = spec.video, spec.video.fps
    blink, gaze = channel_groups(model)
    gaze_mask = np.zeros(len(first), bool)
    gaze_mask[gaze] = True
    base, eyes = Transition(np.where(gaze_mask, 0.0, first).astype(np.float64)), Transition(first[gaze_mask].astype(np.float64))
    out = np.empty((draws.frames, len(first)))
    out[0] = first
    blink_start, blink_length = None, 0.0
    for t in range(1, draws.frames):
        rng = draws.rng("expression_motion", t)
        if rng.uniform() < v.expression_rate_hz / fps:
            target = sample_expression(rng, spec.sampling, model).astype(np.float64)
            target[blink] = 0.0  # eyes close by the blink process, not held shut by an expression for seconds
            base.retarget(t, np.where(gaze_mask, 0.0, target), rng.uniform(*v.expression_onset_s) * fps)
        rng = draws.rng("gaze", t)
        if len(gaze) and rng.uniform() < v.gaze_shift_rate_hz / fps:
            weights = np.zeros(len(first))
            index = {n: i for i, n in enumerate(model.expression_names)}
            _gaze(rng, lambda name, value: weights.__setitem__(index[name], value) if name in index else None)
            eyes.retarget(t, weights[gaze_mask], v.gaze_shift_s * fps)
        rng = draws.rng("blink", t)
        open_eyes = blink_start is None or t - blink_start > blink_length
        if len(blink) and open_eyes and rng.uniform() < blink_hazard(v) / fps:
            blink_start, blink_length = t, rng.uniform(*v.blink_duration_s) * fps
        frame = base.at(t)
        frame[gaze_mask] = eyes.at(t)
        if blink_start is not None:
            frame[blink] = np.maximum(frame[blink], blink_closure((t - blink_start) / max(blink_length, 1e-6)))
        out[t] = frame
    return out


def blink_hazard(v) -> float:
    """Blinks start at this rate (per second) while the eyes are open, so that counting the time spent
    blinking too they come at ``blink_rate_per_min`` (a Poisson process with dead time)."""
    rate = v.blink_rate_per_min / 60.0
    return rate / max(1.0 - rate * np.mean(v.blink_duration_s), 1e-3)


def blink_closure(phase) -> float:
    """How closed the eyes are ``phase`` (0..1) through a blink: closing in its first third, reopening after."""
    if phase >= 1 or phase < 0:
        return 0.0
    return float(smoothstep(phase * 3) if phase < 1 / 3 else 1 - smoothstep((phase - 1 / 3) * 1.5))


# --- light


def light_path(draws: Draws, v, first: np.ndarray) -> np.ndarray:
    """(K, 9, 3): the first light turned about the camera's y axis and scaled, both by OU processes."""
    turn = np.radians(np.cumsum(ou_states(draws, "light_motion", 0, v.light_turn_std_deg, v.light_time_constant_s, v.dt))
                      * v.dt)
    turn -= turn[0]
    gain = np.exp(ou_offsets(draws, "light_motion", 1, v.light_gain_std, v.light_time_constant_s, v.dt))
    out = np.empty((draws.frames, 9, 3))
    out[0] = first
    for t in range(1, draws.frames):
        out[t] = gain[t] * (sh_rotation_y(turn[t]) @ np.asarray(first, np.float64))
    return out


@functools.lru_cache(maxsize=1)
def _sphere() -> np.ndarray:
    k = np.arange(64) + 0.5
    z = 1 - 2 * k / 64
    phi = np.pi * (3 - np.sqrt(5)) * k
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def sh_rotation_y(angle: float) -> np.ndarray:
    """(9, 9) M with M @ coefficients = the coefficients of the same light turned by ``angle`` about
    +y. Each SH band maps into itself under a rotation, so the least-squares fit over the sphere is exact."""
    d = _sphere()
    c, s = np.cos(angle), np.sin(angle)
    turned_back = d @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # rows: R^T d for R about y by angle
    basis, rotated = sh_basis(d), sh_basis(turned_back)  # f'(d) = f(R^T d) = rotated @ coeffs = basis @ M coeffs
    return np.linalg.lstsq(basis, rotated, rcond=None)[0]
