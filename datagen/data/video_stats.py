"""Per-frame change statistics of clips (``datagen inspect`` on a video dataset), to compare with a
target video: head turn per frame, distance change, expression change, blink rate, image motion."""

from __future__ import annotations

import numpy as np

BLINK_CLOSED = 0.5  # an eyeBlink weight above this is a closed eye; a rise through it starts a blink


def delta_stats(rotation: np.ndarray, translation: np.ndarray, expression: np.ndarray, expression_names,
                fps: float) -> list[tuple]:
    """(name, mean, std, min, max, unit) rows from clips' parameters: rotation (N, K, 3) radians,
    translation (N, K, 3) mm, expression (N, K, K_ex)."""
    turn = np.degrees(np.diff(rotation, axis=1)).reshape(-1, 3)
    rows = [_row(f"{axis} change", turn[:, i], "deg/frame") for i, axis in enumerate(("yaw", "pitch", "roll"))]
    rows.append(_row("head turn", np.linalg.norm(turn, axis=1), "deg/frame"))
    distance = np.linalg.norm(translation, axis=-1)
    rows.append(_row("distance change", 100 * (distance[:, 1:] / distance[:, :-1] - 1).ravel(), "%/frame"))
    rows.append(_row("expression change", np.abs(np.diff(expression, axis=1)).sum(-1).ravel(), "L1/frame"))
    rate = blink_rate(expression, expression_names, fps)
    if rate is not None:
        rows.append(("blink rate", rate, 0.0, rate, rate, "per minute"))
    return rows


def blink_rate(expression: np.ndarray, expression_names, fps: float) -> float | None:
    """Blinks per minute: rises of the eyes' closure (the larger eyeBlink weight) through ``BLINK_CLOSED``."""
    names = list(expression_names)
    if "eyeBlink_L" not in names or "eyeBlink_R" not in names:
        return None
    closure = np.maximum(expression[..., names.index("eyeBlink_L")], expression[..., names.index("eyeBlink_R")])
    closed = closure > BLINK_CLOSED
    onsets = (closed[:, 1:] & ~closed[:, :-1]).sum()
    minutes = closed.shape[0] * (closed.shape[1] - 1) / fps / 60.0
    return float(onsets / minutes)


def flow_stats(flow: np.ndarray, occluded: np.ndarray, drawn: np.ndarray) -> list[tuple]:
    """Rows of the image motion: flow (M, H, W, 2) forward flows, occluded (M, H, W), drawn (M, H, W) the
    frames' face and props (depth > 0)."""
    speed = np.linalg.norm(flow.astype(np.float32), axis=-1)
    per_pair = [s[d].mean() if d.any() else 0.0 for s, d in zip(speed, drawn)]
    hidden = [o[d].mean() if d.any() else 0.0 for o, d in zip(occluded, drawn)]
    return [_row("face motion", per_pair, "px/frame"), _row("face occluded next frame", hidden, "share")]


def _row(name, values, unit):
    values = np.asarray(values, np.float64)
    return (name, values.mean(), values.std(), values.min(), values.max(), unit)
