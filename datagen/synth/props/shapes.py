"""Closed and swept primitives for props: (positions (N, 3), triangles (M, 3)), counter-clockwise
seen from outside, in whatever frame the points are given in."""

from __future__ import annotations

import numpy as np


def tube(path: np.ndarray, radius: float, segments: int = 8, closed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A circle of ``radius`` swept along the polyline ``path`` (K, 3), its frames carried along by
    parallel transport; ``closed`` joins the end to the start (a spectacle rim)."""
    path = np.asarray(path, np.float64)
    ahead = np.roll(path, -1, 0) - path if closed else np.gradient(path, axis=0)
    if closed:
        ahead = (ahead + np.roll(ahead, 1, 0)) / 2
    tangents = ahead / np.maximum(np.linalg.norm(ahead, axis=1, keepdims=True), 1e-12)
    seed = np.eye(3)[np.argmin(np.abs(tangents[0]))]
    normal = np.cross(tangents[0], seed)
    normal /= np.linalg.norm(normal)
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    rings = []
    for t in tangents:
        normal = normal - t * (normal @ t)
        normal /= max(np.linalg.norm(normal), 1e-12)
        binormal = np.cross(t, normal)
        rings.append(radius * (np.cos(angles)[:, None] * normal + np.sin(angles)[:, None] * binormal))
    positions = (path[:, None] + np.stack(rings)).reshape(-1, 3)
    return positions, _band(len(path), segments, closed)


def _band(rings: int, segments: int, closed: bool) -> np.ndarray:
    """Triangles joining consecutive rings of ``segments`` points (the sweep's side)."""
    k = np.arange(segments)
    pairs = rings if closed else rings - 1
    out = []
    for r in range(pairs):
        a, b = r * segments + k, r * segments + (k + 1) % segments
        c, d = ((r + 1) % rings) * segments + k, ((r + 1) % rings) * segments + (k + 1) % segments
        out += [np.stack([a, b, c], 1), np.stack([b, d, c], 1)]
    return np.concatenate(out).astype(np.int32)


def ellipsoid(centre, axes: np.ndarray, rings: int = 10, segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid: ``axes`` (3, 3) rows are its semi-axes (vectors); poles along the third."""
    polar = np.linspace(0, np.pi, rings + 1)[1:-1]
    around = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    unit = np.stack([np.sin(polar)[:, None] * np.cos(around), np.sin(polar)[:, None] * np.sin(around),
                     np.repeat(np.cos(polar)[:, None], segments, 1)], -1).reshape(-1, 3)
    unit = np.concatenate([unit, [[0, 0, 1], [0, 0, -1]]])
    positions = np.asarray(centre, np.float64) + unit @ np.asarray(axes, np.float64)
    side = _band(rings - 1, segments, False)[:, ::-1]  # rings run from the +pole down: flip to face out
    k = np.arange(segments)
    top, bottom = len(unit) - 2, len(unit) - 1
    last = (rings - 2) * segments
    caps = np.concatenate([np.stack([np.full(segments, top), k, (k + 1) % segments], 1),
                           np.stack([np.full(segments, bottom), last + (k + 1) % segments, last + k], 1)])
    triangles = np.concatenate([side, caps]).astype(np.int32)
    if np.linalg.det(np.asarray(axes, np.float64)) < 0:  # a mirrored frame turns the triangles inside out
        triangles = triangles[:, ::-1]
    return positions, triangles


def capsule(start, end, radius: float, segments: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A finger: an ellipsoid stretched from ``start`` to ``end``, ``radius`` thick."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    axis = (end - start) / 2
    seed = np.eye(3)[np.argmin(np.abs(axis))]
    u = np.cross(axis, seed)
    u *= radius / np.linalg.norm(u)
    v = np.cross(axis / np.linalg.norm(axis), u)
    return ellipsoid((start + end) / 2, np.stack([u, v, axis * (1 + radius / np.linalg.norm(axis))]), 8, segments)


def merge(parts) -> tuple[np.ndarray, np.ndarray]:
    """Several (positions, triangles) as one."""
    offsets = np.cumsum([0] + [len(p) for p, _ in parts[:-1]])
    return (np.concatenate([p for p, _ in parts]),
            np.concatenate([t + o for (_, t), o in zip(parts, offsets)]).astype(np.int32))
