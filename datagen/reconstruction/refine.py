"""Fit the face model to a network's dense 2D points: a few Levenberg-Marquardt steps per image, batched.

The network regresses the crop positions of a few hundred face vertices with an uncertainty each
(``CoarseNet`` with ``num_points``); the reconstruction is the model face whose projection best
explains them, as in Wood et al. 2022 ("3D face reconstruction with dense landmarks"). Minimised:

    sum_i |project(vertex_i) - point_i|^2 / (SIGMA_SCALE sigma_i)^2
        + |identity - i0|^2 / IDENTITY_SIGMA^2 + |expression - e0|^2 / EXPRESSION_SIGMA^2

over identity, expression (kept in [0, 1]) and the pose (rotation, translation), starting from the
network's regressed parameters (identity i0, expression e0, pose), about which the priors are
centred. A single perspective view does not tell a face's size from its distance: the identity
prior settles that, with whatever the points show of the proportions the model ties to the size
(identity mode 0 of ict-facekit is 95% a uniform scale).
The Jacobian is analytic for the shape (the model is linear in its coefficients) and by forward
differentiation for the three angles.
"""

from __future__ import annotations

import torch
from torch.func import jacfwd, vmap

from .data import translation_of
from ..camera import rotation_matrix_torch, to_camera_torch
from .network import POINT_LOG_SIGMA, FaceDecoder

EXPRESSION_SIGMA = 0.2  # how far (blendshape weight) the fit may move an expression from the network's
# The points' errors are correlated (a network's error moves whole contours), not independent as the
# sigmas it learns say: the fit reads them as SIGMA_SCALE times less certain, and centres the identity
# prior on the regressed identity (the network's own estimate). Chosen on a 10-minute trial network
# before the 55-minute run of the README; `bench/fit_settings.py` compares settings on a checkpoint
# (on that run: 0.757 of the mean face's error, against 0.770 with the sigmas as learnt and an
# N(0, 1) prior about the mean face, and 0.777 for the regressed parameters).
SIGMA_SCALE = 3.0
IDENTITY_SIGMA = 0.7  # spread of the identity about the regressed one
ITERATIONS = 5  # Levenberg-Marquardt steps (bench/fit_settings.py prints the fit's cost per batch)
DAMPING = 1e-3  # Levenberg-Marquardt damping, relative to the normal matrix's diagonal


def _rotation_derivatives(rotation: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3, 3): d R / d (yaw, pitch, roll), the last axis the angle."""
    return vmap(jacfwd(lambda r: rotation_matrix_torch(r[None])[0]))(rotation)


def _projection_jacobian(camera: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(B, D, 2, 3): d (u, v) / d camera-space point, for u = fx x / z + cx, v = cy - fy y / z, z = -camera z."""
    x, y, depth = camera[..., 0], camera[..., 1], (-camera[..., 2]).clamp(min=1.0)
    fx, fy = intrinsics[:, 0, None], intrinsics[:, 1, None]
    zero = torch.zeros_like(x)
    du = torch.stack([fx / depth, zero, fx * x / depth ** 2], -1)
    dv = torch.stack([zero, -fy / depth, -fy * y / depth ** 2], -1)
    return torch.stack([du, dv], -2)


@torch.no_grad()
def fit_to_points(decoder: FaceDecoder, points: torch.Tensor, sigma: torch.Tensor, intrinsics: torch.Tensor,
                  identity: torch.Tensor, expression: torch.Tensor, rotation: torch.Tensor,
                  translation: torch.Tensor, iterations: int = ITERATIONS, sigma_scale: float = SIGMA_SCALE,
                  identity_sigma: float = IDENTITY_SIGMA) -> dict[str, torch.Tensor]:
    """Fitted {identity, expression, rotation, translation} for (B, D, 2) ``points`` (crop pixels) of
    ``decoder``'s vertices with (B, D) ``sigma`` (pixels), from the given start, which is also the
    centre of the identity and expression priors. Levenberg-Marquardt: a step that does not lower an
    image's cost is not taken, and that image's damping grows."""
    k, e = identity.shape[1], expression.shape[1]
    problem = _Problem(decoder, points.double(), 1.0 / (sigma_scale * sigma.double()[..., None]), intrinsics.double(),
                       identity.double(), expression.double(), identity_sigma)
    theta = torch.cat([identity, expression, rotation, translation], 1).double()
    damping = torch.full((len(theta), 1), DAMPING, dtype=theta.dtype)
    cost = problem.cost(theta)
    for _ in range(iterations):
        residual, jacobian = problem.linearise(theta)
        normal = jacobian.transpose(1, 2) @ jacobian
        gradient = (jacobian.transpose(1, 2) @ residual[..., None])[..., 0]
        # + 1e-9: the pose has no prior, and a degenerate view must not make the system singular
        normal = normal + torch.diag_embed(damping * normal.diagonal(dim1=1, dim2=2) + 1e-9)
        candidate = theta - torch.linalg.solve(normal, gradient)
        candidate[:, k:k + e] = candidate[:, k:k + e].clamp(0, 1)
        new_cost = problem.cost(candidate)
        better = new_cost < cost
        theta = torch.where(better[:, None], candidate, theta)
        cost = torch.where(better, new_cost, cost)
        damping = torch.where(better[:, None], damping / 10, damping * 10)
    identity, expression, rotation, translation = theta.float().split([k, e, 3, 3], 1)
    return {"identity": identity, "expression": expression, "rotation": rotation, "translation": translation}


class _Problem:
    """The residuals (points, then priors) of ``fit_to_points`` for a parameter batch, and their Jacobian."""

    def __init__(self, decoder, points, weight, intrinsics, prior_identity, prior_expression, identity_sigma):
        self.decoder, self.points, self.weight, self.intrinsics = decoder, points, weight, intrinsics
        self.prior_identity, self.prior_expression = prior_identity, prior_expression
        self.k, self.e = prior_identity.shape[1], prior_expression.shape[1]
        self.mean, self.pivot = decoder.mean.double(), decoder.pivot.double()
        self.basis = torch.cat([decoder.identity, decoder.expression]).double()  # (K + E, D, 3)
        self.prior_weight = torch.cat([torch.full((self.k,), 1.0 / identity_sigma),
                                       torch.full((self.e,), 1.0 / EXPRESSION_SIGMA)]).double()

    def shape(self, theta):
        """(B, D, 3) model-space vertices of the identity and expression in ``theta``."""
        return self.mean + torch.einsum("bk,kdc->bdc", theta[:, :self.k + self.e], self.basis)

    def residual(self, theta, shape):
        rotation, translation = theta[:, -6:-3], theta[:, -3:]
        projected = self.decoder.project(shape, rotation, translation, self.intrinsics)
        coefficients = theta[:, :self.k + self.e] - torch.cat([self.prior_identity, self.prior_expression], 1)
        return torch.cat([((projected - self.points) * self.weight).flatten(1), coefficients * self.prior_weight], 1)

    def cost(self, theta):
        return (self.residual(theta, self.shape(theta)) ** 2).sum(1)

    def linearise(self, theta):
        shape = self.shape(theta)
        local = shape - self.pivot
        rotation, translation = theta[:, -6:-3], theta[:, -3:]
        matrix = rotation_matrix_torch(rotation)  # also for the Jacobian below
        camera = to_camera_torch(shape, self.pivot, rotation, translation)
        dproj = _projection_jacobian(camera, self.intrinsics) * self.weight[..., None]  # (B, D, 2, 3)
        points = torch.cat([
            torch.einsum("bdcj,kdj->bdck", torch.einsum("bdci,bij->bdcj", dproj, matrix), self.basis),
            torch.einsum("bdci,bijr,bdj->bdcr", dproj, _rotation_derivatives(rotation), local),
            dproj], -1).flatten(1, 2)  # (B, 2D, K + E + 6)
        priors = torch.cat([torch.diag_embed(self.prior_weight).expand(len(theta), -1, -1),
                            torch.zeros(len(theta), self.k + self.e, 6, dtype=theta.dtype)], 2)
        return self.residual(theta, shape), torch.cat([points, priors], 1)


def final_parameters(predicted: dict, intrinsics: torch.Tensor, size: int,
                     point_decoder: FaceDecoder | None = None) -> dict[str, torch.Tensor]:
    """A reconstruction's {identity, expression, rotation, translation} from a network's output
    (``CoarseNet.forward``) for crops of ``size`` pixels with (B, 4) ``intrinsics``: the regressed
    parameters, fitted to the network's dense points where it has them (give their ``point_decoder``)."""
    start = {"identity": predicted["identity"], "expression": predicted["expression"],
             "rotation": predicted["rotation"],
             "translation": translation_of(predicted["position"], predicted["scale"], intrinsics, size)}
    if point_decoder is None or "points" not in predicted:
        return start
    sigma = predicted["point_log_sigma"].clamp(*POINT_LOG_SIGMA).exp()
    return fit_to_points(point_decoder, (predicted["points"] + 0.5) * size, sigma, intrinsics, **start)
