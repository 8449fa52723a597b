"""Fit a morphable model to a photo's 68 landmarks: eos for the initial fit, then a perspective refinement.

1. eos (``eos.fitting.fit_shape_and_pose``) fits pose, identity and expression blendshapes under
   eos's scaled-orthographic camera. It is given the model restricted to the 68 landmark
   vertices, with the identity basis re-orthonormalised there (eos expects an orthonormal PCA
   basis; the model's modes cut to a region are not): with ``B = U S Vᵀ``, eos fits ``c`` in the
   basis ``U S``, and ``identity = V c`` has the same N(0, I) prior, so nothing is lost.
2. The result becomes datagen's parameters (yaw, pitch, roll, translation under a pinhole camera,
   see README "Conventions") and is refined by bounded least squares (scipy, analytic Jacobian)
   on the reprojection error under that camera, with the identity prior and blendshape weights
   kept in [0, 1] (eos leaves them unbounded above; ``parameter_bounds``).

Reported: the mean distance between the 68 fitted and given landmarks, in pixels and as a
fraction of the inter-ocular distance.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .landmarks import interocular_distance
from ..models.morphable_model import MorphableModel
from ..camera import pose_and_shape_jacobian, project_points, rotation_matrix, to_camera


@dataclass(frozen=True)
class LandmarkFit:
    """A fitted face in datagen's conventions (camera space, mm, pixels of the fitted image)."""

    identity: np.ndarray  # (K_id,) float32
    expression: np.ndarray  # (K_ex,) float32
    rotation: np.ndarray  # (3,) float32 yaw, pitch, roll
    translation: np.ndarray  # (3,) float32 mm
    intrinsics: np.ndarray  # (4,) float32 fx, fy, cx, cy
    landmarks: np.ndarray  # (68, 2) the landmarks fitted to
    fitted_landmarks: np.ndarray  # (68, 2) the model's landmarks projected
    error_px: float  # mean landmark distance
    error_iod: float  # the same / inter-ocular distance

    def as_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """An unknown photo's camera: focal length 1.5x the larger side (~37 degrees across), centred."""
    f = 1.5 * max(width, height)
    return np.array([f, f, width / 2, height / 2], np.float32)


@functools.lru_cache(maxsize=4)
def _landmark_model(model: MorphableModel):
    """(eos model of the 68 landmark vertices, V from the identity SVD, landmark arrays)."""
    import eos

    ids = model.landmark_ids
    mean = model.mean[ids].astype(np.float64)
    identity = model.identity_basis[:, ids].reshape(model.num_identity, -1).T.astype(np.float64)  # (204, K)
    u, s, vt = np.linalg.svd(identity, full_matrices=False)
    keep = s > s.max() * 1e-6
    u, s, vt = u[:, keep], s[keep], vt[keep]
    shape = eos.morphablemodel.PcaModel(mean.reshape(-1, 1).astype(np.float32), u.astype(np.float32),
                                        (s ** 2).astype(np.float32).reshape(-1, 1), [])
    expression = model.expression_basis[:, ids].reshape(model.num_expression, -1)
    blendshapes = [eos.morphablemodel.Blendshape(name, e.reshape(-1, 1).astype(np.float32))
                   for name, e in zip(model.expression_names or [str(k) for k in range(len(expression))], expression)]
    eos_model = eos.morphablemodel.MorphableModel(shape, blendshapes, eos.morphablemodel.PcaModel())
    return eos_model, vt.T, mean, identity, expression.T.astype(np.float64)


def fit_landmarks(model: MorphableModel, landmarks: np.ndarray, width: int, height: int,
                  intrinsics: np.ndarray | None = None, identity_weight: float = 4.0,
                  expression_weight: float = 4.0) -> LandmarkFit:
    """Fit ``model`` to (68, 2) pixel ``landmarks`` of a ``width`` x ``height`` image."""
    import eos

    intrinsics = default_intrinsics(width, height) if intrinsics is None else np.asarray(intrinsics, np.float32)
    eos_model, v, mean, id_basis, ex_basis = _landmark_model(model)
    points = [eos.core.Landmark(str(k), np.asarray(p, np.float32).reshape(2, 1)) for k, p in enumerate(landmarks)]
    _, pose, shape_coefficients, blendshape_coefficients = eos.fitting.fit_shape_and_pose(
        eos_model, points, eos.core.LandmarkMapper(), width, height, num_iterations=5, lambda_identity=30.0,
        lambda_expressions=30.0)
    identity = v @ np.asarray(shape_coefficients, np.float64)
    expression = np.clip(np.asarray(blendshape_coefficients, np.float64), 0, 1)
    camera = eos.fitting.get_3x4_affine_camera_matrix(pose, width, height).astype(np.float64)
    start = np.concatenate([_pose_from_affine(camera, model.pivot, intrinsics), identity, expression])

    k_id = len(identity)
    iod = interocular_distance(landmarks)
    target = np.asarray(landmarks, np.float64)
    pivot = model.pivot.astype(np.float64)
    fx, fy, cx, cy = intrinsics.astype(np.float64)  # datagen's pinhole: camera.project

    shape_basis = np.concatenate([id_basis, ex_basis], 1).reshape(-1, 3, id_basis.shape[1] + ex_basis.shape[1])

    def shape_of(x):  # the 68 landmark vertices in model space
        return mean + (id_basis @ x[6:6 + k_id]).reshape(-1, 3) + (ex_basis @ x[6 + k_id:]).reshape(-1, 3)

    def landmarks_of(x):
        return project_points(to_camera(shape_of(x), pivot, x[:3], x[3:6]), (fx, fy, cx, cy))

    prior = prior_scales(model, identity_weight, expression_weight)

    def residuals(x):
        return np.concatenate([(landmarks_of(x) - target).ravel() / iod, prior * x[6:]])

    def jacobian(x):  # analytic (camera.pose_and_shape_jacobian): a finite-difference one costs ~160 evaluations
        local = shape_of(x) - pivot
        rotation = rotation_matrix(x[:3])
        d_uv = pose_and_shape_jacobian(x[:3], rotation, local, local @ rotation.T + x[3:6], intrinsics, shape_basis)
        return np.concatenate([d_uv.reshape(-1, len(x)) / iod, np.hstack([np.zeros((len(prior), 6)), np.diag(prior)])])

    lower, upper = parameter_bounds(model)
    start = np.clip(start, lower + 1e-9, upper - 1e-9)
    x = least_squares(residuals, start, jac=jacobian, bounds=(lower, upper), x_scale="jac", max_nfev=200).x
    fitted = landmarks_of(x)
    distances = np.linalg.norm(fitted - target, axis=1)
    return LandmarkFit(identity=x[6:6 + k_id].astype(np.float32), expression=x[6 + k_id:].astype(np.float32),
                       rotation=x[:3].astype(np.float32), translation=x[3:6].astype(np.float32),
                       intrinsics=intrinsics, landmarks=target.astype(np.float32),
                       fitted_landmarks=fitted.astype(np.float32), error_px=float(distances.mean()),
                       error_iod=float(distances.mean() / iod))


def parameter_bounds(model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of x = (yaw, pitch, roll, tx, ty, tz, identity, expression): the face in
    front of the camera, identity within 4 standard deviations, blendshape weights in [0, 1]."""
    k_id, k_ex = model.num_identity, model.num_expression
    ex = (0.0, 1.0) if model.expression_kind == "blendshape" else (-4.0, 4.0)
    lower = np.concatenate([[-np.pi, -np.pi / 2, -np.pi, -np.inf, -np.inf, -np.inf], np.full(k_id, -4.0), np.full(k_ex, ex[0])])
    upper = np.concatenate([[np.pi, np.pi / 2, np.pi, np.inf, np.inf, -1.0], np.full(k_id, 4.0), np.full(k_ex, ex[1])])
    return lower, upper


def prior_scales(model: MorphableModel, identity_weight: float, expression_weight: float) -> np.ndarray:
    """(K_id + K_ex,) the priors' residual per coefficient: sqrt(weight) x 0.02 (identity), x 0.05
    (expression), against landmark residuals in inter-ocular distances."""
    return np.concatenate([np.full(model.num_identity, np.sqrt(identity_weight) * 0.02),
                           np.full(model.num_expression, np.sqrt(expression_weight) * 0.05)])


def _pose_from_affine(camera: np.ndarray, pivot: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll, tx, ty, tz) of a pinhole camera that sees the model as eos's affine camera does.

    eos's rows map model space to pixels (u right, v down): row 0 = s * R[0], row 1 = -s * R[1].
    """
    s = np.linalg.norm(camera[0, :3])
    r0, r1 = camera[0, :3] / s, -camera[1, :3] / np.linalg.norm(camera[1, :3])
    r2 = np.cross(r0, r1)
    u, _, vt = np.linalg.svd(np.stack([r0, r1, r2]))
    r = u @ vt
    yaw, pitch, roll = np.arctan2(-r[2, 0], r[2, 2]), np.arcsin(np.clip(r[2, 1], -1, 1)), np.arctan2(-r[0, 1], r[1, 1])
    fx, fy, cx, cy = intrinsics
    pu, pv = camera[:2] @ np.append(pivot, 1.0)
    tz = -fx / s
    return np.array([yaw, pitch, roll, (pu - cx) * -tz / fx, -(pv - cy) * -tz / fy, tz])
