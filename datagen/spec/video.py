"""The ``[video]`` table: clips of K frames whose motion follows documented stochastic processes
(synth/motion.py draws them; README "Video clips" gives every default's source or says it is an
assumption). ``frames = 1`` is the still pipeline, exactly.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from .checks import check_range, require
from .priors import Range


@dataclass(frozen=True)
class VideoSpec:
    """K frames per clip at ``fps``: identity, material, detail, eye colour and background stay; head
    pose, camera distance and shake, expression, gaze, blinks and light evolve (synth/motion.py)."""

    frames: int = 1  # K: frames per clip; 1 = stills (no frame axis, no flow)
    fps: float = 30.0
    # head: Ornstein-Uhlenbeck angular velocity (stationary std per axis, correlation time), integrated
    # into the angles, which reflect at [sampling.pose]'s ranges (a photo-realistic job's: its change ranges)
    head_speed_std_deg: typing.Tuple[float, ...] = (15.0, 10.0, 5.0)  # yaw, pitch, roll; degrees per second
    head_time_constant_s: float = 0.5
    distance_std: float = 0.03  # log camera distance: Ornstein-Uhlenbeck, stationary std
    distance_time_constant_s: float = 2.0
    shake_std: float = 0.001  # camera shake: principal-point offset, stationary std, fraction of image height
    shake_time_constant_s: float = 0.15
    expression_rate_hz: float = 0.5  # new expression targets (drawn from [sampling.expression]) per second
    expression_onset_s: Range = (0.2, 0.6)  # time to move from the current expression to a new target
    blink_rate_per_min: float = 17.0
    blink_duration_s: Range = (0.1, 0.4)  # closing and reopening, a third then two thirds of it
    gaze_shift_rate_hz: float = 1.0  # saccades per second
    gaze_shift_s: float = 0.05  # a saccade's duration
    light_turn_std_deg: float = 5.0  # the light turns about the camera's vertical axis: OU angular velocity, deg/s
    light_gain_std: float = 0.05  # log brightness: Ornstein-Uhlenbeck, stationary std
    light_time_constant_s: float = 2.0

    def check(self, where):
        require(self.frames >= 1, where, "frames", f"must be >= 1 (frames per clip), got {self.frames}")
        require(self.fps > 0, where, "fps", f"must be > 0 frames per second, got {self.fps}")
        require(len(self.head_speed_std_deg) == 3 and min(self.head_speed_std_deg) >= 0, where, "head_speed_std_deg",
                "must be three numbers >= 0 (yaw, pitch, roll; degrees per second)")
        for name in ("head_time_constant_s", "distance_time_constant_s", "shake_time_constant_s", "light_time_constant_s",
                     "gaze_shift_s"):
            require(getattr(self, name) > 0, where, name, "must be > 0 seconds")
        for name in ("distance_std", "shake_std", "expression_rate_hz", "blink_rate_per_min", "gaze_shift_rate_hz",
                     "light_turn_std_deg", "light_gain_std"):
            require(getattr(self, name) >= 0, where, name, "must be >= 0")
        require(self.distance_std <= 0.5, where, "distance_std", "must be <= 0.5 (a log distance)")
        require(self.shake_std <= 0.05, where, "shake_std", "must be <= 0.05 (a fraction of the image height)")
        check_range(self.expression_onset_s, where, "expression_onset_s", 0.0, 10.0)
        check_range(self.blink_duration_s, where, "blink_duration_s", 0.0, 2.0)
        require(self.blink_rate_per_min / 60.0 * self.blink_duration_s[1] < 0.8, where, "blink_rate_per_min",
                "leaves the eyes closed most of the time with these blink durations; lower it")

    @property
    def is_clip(self) -> bool:
        """Whether samples are clips (a frame axis, flow between frames): frames > 1."""
        return self.frames > 1

    @property
    def dt(self) -> float:
        return 1.0 / self.fps
