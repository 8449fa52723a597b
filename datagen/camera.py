"""The conventions of datagen's cameras and lights, written once (README "Conventions").

Model space: millimetres, x to the subject's left, y up, the face looking down +z.
Camera space is OpenGL's: the camera at the origin looking down -z, x right, y up; ``depth`` is
``-z``. A model vertex ``v`` goes to camera space as ``R (v - pivot) + t`` with
``R = Rz(roll) Rx(pitch) Ry(yaw)``: positive yaw turns the face towards the image's right (the
subject's left), positive pitch turns it down, positive roll turns it counter-clockwise.
Pixels: origin at the image's top-left corner, x right, y down, pixel (i, j)'s centre at
(i + 0.5, j + 0.5); projection is ``u = fx x / (-z) + cx``, ``v = cy - fy y / (-z)``.
Lighting: 2nd-order real spherical harmonics of the radiance, per RGB channel, in camera space;
irradiance is their convolution with the clamped cosine (Ramamoorthi & Hanrahan 2001).

numpy first; the torch twins (``*_torch``) compute the same in a graph, importing torch only
when called.
"""

from __future__ import annotations

import numpy as np

# Real SH basis Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy), Y2-1 (yz), Y20 (3z^2 - 1), Y21 (xz), Y22 (x^2 - y^2)
SH_NORM = (0.282095, 0.488603, 0.488603, 0.488603, 1.092548, 1.092548, 0.315392, 1.092548, 0.546274)
SH_BAND_FACTORS = (1.0, 2.0 / 3.0, 0.25)  # clamped-cosine convolution per band (A0, A1, A2 / pi)


# --- rotation and the model-to-camera transform


def rotation_matrix(rotation) -> np.ndarray:
    """(3, 3) float64 R = Rz(roll) @ Rx(pitch) @ Ry(yaw) for rotation = (yaw, pitch, roll) in radians."""
    yaw, pitch, roll = (float(a) for a in rotation)
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def rotation_derivatives(rotation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d R / d yaw, d pitch, d roll of R = Rz(roll) Rx(pitch) Ry(yaw) (``camera.rotation_matrix``)."""
    yaw, pitch, roll = (float(a) for a in rotation)
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    dry = np.array([[-sy, 0, cy], [0, 0, 0], [-cy, 0, -sy]])
    drx = np.array([[0, 0, 0], [0, -sp, -cp], [0, cp, -sp]])
    drz = np.array([[-sr, -cr, 0], [cr, -sr, 0], [0, 0, 0]])
    return rz @ rx @ dry, rz @ drx @ ry, drz @ rx @ ry


def to_camera(vertices: np.ndarray, pivot: np.ndarray, rotation, translation) -> np.ndarray:
    """Model-space vertices to camera space: ``R (v - pivot) + t``, in the vertices' dtype.

    One face: vertices (V, 3), rotation (3,), translation (3,). A batch: vertices (B, V, 3),
    rotation (B, 3), translation (B, 3).
    """
    vertices = np.asarray(vertices)
    local = vertices - pivot
    if vertices.ndim == 3:
        rotations = np.stack([rotation_matrix(r) for r in rotation]).astype(vertices.dtype)
        return np.einsum("bij,bvj->bvi", rotations, local) + np.asarray(translation)[:, None, :]
    return local @ rotation_matrix(rotation).T.astype(vertices.dtype) + translation


def rotation_matrix_torch(rotation):
    """(B, 3, 3) R = Rz(roll) Rx(pitch) Ry(yaw) of (B, 3) torch angles, as ``rotation_matrix``."""
    import torch

    yaw, pitch, roll = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ rx @ ry


def to_camera_torch(vertices, pivot, rotation, translation):
    """(B, V, 3) torch vertices to camera space, as ``to_camera``."""
    import torch

    return torch.einsum("bij,bvj->bvi", rotation_matrix_torch(rotation), vertices - pivot) + translation[:, None]


# --- projection


def project(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-space points (B, N, 3) with intrinsics (B, 4) -> pixels (B, N, 2)."""
    fx, fy, cx, cy = (intrinsics[:, i, None] for i in range(4))
    depth = -points[..., 2]
    u = fx * points[..., 0] / depth + cx
    v = cy - fy * points[..., 1] / depth
    return np.stack([u, v], axis=-1).astype(np.float32)


def project_points(points: np.ndarray, intrinsics) -> np.ndarray:
    """``project`` of one face's (N, 3) points, in their dtype (float64 inside a least-squares fit)."""
    fx, fy, cx, cy = intrinsics
    depth = -points[:, 2]
    return np.stack([fx * points[:, 0] / depth + cx, cy - fy * points[:, 1] / depth], 1)


def pose_and_shape_jacobian(rotation_angles, rotation: np.ndarray, local: np.ndarray, camera: np.ndarray,
                            intrinsics, shape_basis: np.ndarray) -> np.ndarray:
    """(M, 2, 6 + K) d (u, v) / d (yaw, pitch, roll, tx, ty, tz, shape coefficients) of M points:
    ``local`` their model-space positions minus the pivot (M, 3), ``camera`` = R local + t (M, 3),
    ``shape_basis`` (M, 3, K) d local / d coefficients; ``project``'s pinhole."""
    fx, fy = float(intrinsics[0]), float(intrinsics[1])
    depth = -camera[:, 2]
    d_uv = np.zeros((len(camera), 2, 3))
    d_uv[:, 0, 0] = fx / depth
    d_uv[:, 0, 2] = fx * camera[:, 0] / depth ** 2
    d_uv[:, 1, 1] = -fy / depth
    d_uv[:, 1, 2] = -fy * camera[:, 1] / depth ** 2
    d_rotation = np.stack([local @ d.T for d in rotation_derivatives(rotation_angles)], 2)  # (M, 3, 3 angles)
    d_camera = np.concatenate([d_rotation, np.broadcast_to(np.eye(3), (len(camera), 3, 3)), rotation @ shape_basis], 2)
    return np.einsum("mij,mjp->mip", d_uv, d_camera)


def project_torch(points, intrinsics, min_depth: float = 1.0):
    """``project`` of (B, N, 3) torch points; depth clamped at ``min_depth`` mm (a wild prediction
    behind the camera must not divide by zero)."""
    import torch

    depth = (-points[..., 2]).clamp(min=min_depth)
    fx, fy, cx, cy = (intrinsics[:, k, None] for k in range(4))
    return torch.stack([fx * points[..., 0] / depth + cx, cy - fy * points[..., 1] / depth], -1)


def projection_matrix(intrinsics, width: int, height: int, near: float, far: float) -> np.ndarray:
    """The OpenGL projection (4, 4, row-major) that maps camera space to clip space exactly as ``project``.

    With the framebuffer read back top row first, NDC (-1, 1) is the top-left pixel corner.
    """
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    return np.array([
        [2 * fx / width, 0, 1 - 2 * cx / width, 0],
        [0, 2 * fy / height, 2 * cy / height - 1, 0],
        [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, -1, 0],
    ], np.float32)


def crop_intrinsics(intrinsics, box, size: int) -> np.ndarray:
    """(fx, fy, cx, cy) of the square crop ``box`` = (x0, y0, side) of an image, resized to
    ``size`` pixels: the same camera, seen through the crop (in the intrinsics' dtype)."""
    fx, fy, cx, cy = np.asarray(intrinsics)
    x0, y0, side = box
    k = size / side
    return np.array([fx * k, fy * k, (cx - x0) * k, (cy - y0) * k])


def resize_intrinsics(intrinsics, side: float, width: int, height: int) -> np.ndarray:
    """The intrinsics of a square ``side``-pixel image resized to ``width`` x ``height``."""
    return np.asarray(intrinsics) * (np.array([width, height] * 2, np.float32) / side)


# --- lighting


def sh_basis(n: np.ndarray) -> np.ndarray:
    """The 9 real SH basis functions at unit direction(s) n (..., 3) -> (..., 9)."""
    n = np.asarray(n, np.float64)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    k = SH_NORM
    return np.stack([np.full_like(x, k[0]), k[1] * y, k[2] * z, k[3] * x, k[4] * x * y, k[5] * y * z,
                     k[6] * (3 * z * z - 1), k[7] * x * z, k[8] * (x * x - y * y)], axis=-1)


def irradiance_basis(normals: np.ndarray) -> np.ndarray:
    """(N, 9): E(n) = basis @ sh for (9, 3) radiance SH ``sh``, exactly as face.frag computes it."""
    x, y, z = normals[:, 0], normals[:, 1], normals[:, 2]
    c0, c1, c2, c3, c4 = SH_NORM[0], SH_NORM[1], SH_NORM[4], SH_NORM[6], SH_NORM[8]
    _, a1, a2 = SH_BAND_FACTORS
    return np.stack([np.full_like(x, c0), a1 * c1 * y, a1 * c1 * z, a1 * c1 * x, a2 * c2 * x * y,
                     a2 * c2 * y * z, a2 * c3 * (3 * z * z - 1), a2 * c2 * x * z, a2 * c4 * (x * x - y * y)], 1)


def glsl_sh_constants() -> str:
    """The SH constants as the GLSL lines face.frag's ``irradiance()`` declares (the shader reads them from here)."""
    c = (SH_NORM[0], SH_NORM[1], SH_NORM[4], SH_NORM[6], SH_NORM[8])
    a = SH_BAND_FACTORS
    return (f"const float c0 = {c[0]!r}, c1 = {c[1]!r}, c2 = {c[2]!r}, c3 = {c[3]!r}, c4 = {c[4]!r};\n"
            f"const float a0 = {a[0]!r}, a1 = {a[1]!r}, a2 = {a[2]!r};")
