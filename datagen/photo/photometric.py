"""Photometric refinement of a landmark fit: inverse rendering against the photo's pixels.

Analysis by synthesis as in Guo et al. (inverse-rendered photo-realistic faces) and 3DMM fitting
practice (Blanz & Vetter 1999; the contour landmarks "marched" to the outline as in Zhu et al.
2015, HPEN). Starting from ``fitting.fit_landmarks``, pose, identity and expression ``x`` minimise

    E(x) = sum_k |p_k(x) - l_k|^2 / iod^2                                  landmarks and contour
         + w / (3 N) sum_v rho(|I(p_v(x)) - a(v) E_L(n_v(x))| / s)          photometric
         + the identity and expression priors of ``fit_landmarks``

- landmarks: at their model vertices, but the jaw line's (0-16 but the chin, 8) on the side that
  turns away from the camera: each moves along its "parallel" (the face vertices at its height,
  between it and the midline) to the one projected outermost, where a photo's annotation (300-W,
  iBUG) puts it: on the outline (``face_region.outline_landmark_vertices``). The contour term.
- photometric: over N face vertices (``face_region``: skin, nose, lips, every ``STRIDE``-th) that
  are visible (facing the camera and in front in a z-buffer of the projected face on a
  ``ZBUFFER_PX`` grid) and land on a pixel the skin mask keeps (``excluded``: what hides the skin,
  hair over the forehead, glasses frames; and clipped pixels are not compared). I is the photo's linear
  colour, bilinear at the vertex's projection p_v; rho is Geman-McClure's r^2 / (1 + r^2 / c^2),
  c = ``CAUCHY``, with s the median residual of the landmark fit, so that what the smooth albedo
  cannot explain (a nostril, a highlight, freckles) does not pull the face, on any photo's contrast.
- lighting L (the renderer's 9x3 SH irradiance, ``camera.irradiance_basis``) and albedo a are
  solved in closed form at every step (alternating linear least squares). The albedo is smooth on
  purpose: quadratic polynomials of the mean face's coordinates plus the lip, cheek and nose
  weights of ``face_parts``, per channel, scaled to a mean of ``SKIN_ALBEDO``. Such an albedo
  cannot copy the photo, so the residual measures alignment and shading. (The library's light
  and albedo map are then recovered by ``texture`` from the refined geometry.)
- the step: Levenberg-Marquardt with analytic Jacobians, vectorised over vertices and parameters
  (numpy): the photo's image gradient times d p / d x, and the shading's change as the normals
  turn with the pose and the shape (the normals' derivative taken at the mean shape). Visibility,
  albedo, light and the robust weights' scale are held within a step and recomputed between
  steps; coarse to fine (the photo blurred by ``BLUR_PX`` pixels).

Reported per photo (``PhotometricReport``), before and after: the landmark error (the 68 matched
landmarks, the jaw's as above, / the inter-ocular distance) and the photometric error (RMS over the
compared vertices, linear RGB in [0, 1], with the best light and albedo for that geometry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import gaussian_filter

from ..camera import SH_BAND_FACTORS, SH_NORM, irradiance_basis, pose_and_shape_jacobian, rotation_derivatives, rotation_matrix
from ..models.morphable_model import MorphableModel
from .face_region import face_region, outline_landmark_vertices
from .fitting import LandmarkFit, parameter_bounds, prior_scales
from .landmarks import interocular_distance
from .texture import SKIN_ALBEDO, unclipped

CAUCHY = 1.5  # rho's c, in units of s (the median residual length)
PHOTOMETRIC_WEIGHT = 1.0  # w above
BLUR_PX = (4.0, 2.0, 0.0)  # the coarse-to-fine levels: Gaussian sigma, pixels of the fitted crop
ITERATIONS = (6, 6, 8)  # LM steps per level, at most
ZBUFFER_PX = 2.0
DEPTH_TOLERANCE_MM = 4.0
MIN_COMPARED = 100


@dataclass(frozen=True)
class PhotometricReport:
    """What the refinement did to one photo (errors as in the module doc)."""

    landmark_error_before: float  # mean landmark distance / inter-ocular distance
    landmark_error_after: float
    photometric_error_before: float | None  # RMS, linear RGB; None: too little skin to compare
    photometric_error_after: float | None
    compared_vertices: int
    steps: int
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def describe(self) -> str:
        """'landmark error 3.2 -> 3.5% of the inter-ocular distance, photometric error 0.0765 -> 0.0662 (RMS, linear RGB)'."""
        def rms(v):
            return "no skin to compare" if v is None else f"{v:.4f}"
        return (f"landmark error {100 * self.landmark_error_before:.1f} -> {100 * self.landmark_error_after:.1f}% "
                f"of the inter-ocular distance, photometric error {rms(self.photometric_error_before)} -> "
                f"{rms(self.photometric_error_after)} (RMS, linear RGB)")


@dataclass(frozen=True, eq=False)
class _State:
    """Held within a step: the compared vertices (indices into the region), the landmarks' vertices,
    and the albedo of the compared vertices and the light (None where too few vertices compare)."""

    compared: np.ndarray
    landmarks: np.ndarray
    albedo: np.ndarray | None = None  # (N, 3)
    light: np.ndarray | None = None  # (9, 3)


class _Photo:
    """The crop's linear colour and its image gradient at one blur level, sampled at sub-pixel points."""

    def __init__(self, linear: np.ndarray, blur: float):
        smooth = np.stack([gaussian_filter(linear[..., c], blur) for c in range(3)], -1) if blur else linear
        gy, gx = np.gradient(smooth, axis=(0, 1))
        self.layers = np.concatenate([smooth, gx, gy], -1).astype(np.float64)  # (H, W, 9)

    def sample(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(colour (N, 3), gradient (N, 3, 2) d colour / d (u, v)) at pixel positions (N, 2), bilinear,
        the border repeated beyond the crop."""
        h, w, _ = self.layers.shape
        x = np.clip(uv[:, 0] - 0.5, 0, w - 1)  # pixel (i, j)'s centre is at (i + 0.5, j + 0.5)
        y = np.clip(uv[:, 1] - 0.5, 0, h - 1)
        x0, y0 = np.minimum(x.astype(np.int64), w - 2), np.minimum(y.astype(np.int64), h - 2)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        top = self.layers[y0, x0] * (1 - fx) + self.layers[y0, x0 + 1] * fx
        bottom = self.layers[y0 + 1, x0] * (1 - fx) + self.layers[y0 + 1, x0 + 1] * fx
        values = top * (1 - fy) + bottom * fy
        return values[:, :3], np.stack([values[:, 3:6], values[:, 6:9]], 2)


class PhotometricRefiner:
    """``refine(fit, linear_crop, excluded)``: see the module doc. Set up once per model and worker."""

    def __init__(self, model: MorphableModel, identity_weight: float = 4.0, expression_weight: float = 4.0,
                 photometric_weight: float = PHOTOMETRIC_WEIGHT):
        self.model, self.region = model, face_region(model)
        self.pivot = model.pivot.astype(np.float64)
        self.prior = np.concatenate([np.zeros(6), prior_scales(model, identity_weight, expression_weight)])
        self.lower, self.upper = parameter_bounds(model)
        self.weight = photometric_weight

    def refine(self, fit: LandmarkFit, linear: np.ndarray, excluded: np.ndarray | None = None
               ) -> tuple[LandmarkFit, PhotometricReport]:
        """(the refined fit, the report). ``linear``: the fitted crop in linear RGB (S, S, 3);
        ``excluded``: (S, S) pixels not to compare. Where the photo shows fewer than
        ``MIN_COMPARED`` comparable vertices, only the landmarks and priors are fitted."""
        start = time.perf_counter()
        problem = _Problem(self, fit, linear, excluded)
        x = np.clip(np.concatenate([fit.rotation, fit.translation, fit.identity, fit.expression]).astype(np.float64),
                    self.lower, self.upper)
        sharp = _Photo(linear, 0.0)
        before = problem.errors(x, sharp)
        problem.scale = max(before.scale, 1e-3)
        steps = 0
        for blur, iterations in zip(BLUR_PX, ITERATIONS):
            photo = sharp if blur == 0 else _Photo(linear, blur)
            for _ in range(iterations):
                x, moved = problem.step(x, photo)
                steps += 1
                if not moved:
                    break
        after = problem.errors(x, sharp)
        report = PhotometricReport(before.landmarks, after.landmarks, before.photometric, after.photometric,
                                   len(after.state.compared), steps, time.perf_counter() - start)
        return problem.as_fit(fit, x, after.state), report


@dataclass(frozen=True)
class _Errors:
    landmarks: float  # mean landmark distance / iod
    photometric: float | None  # RMS, linear RGB
    scale: float  # the median residual's length
    state: "_State"


class _Problem:
    """One photo's refinement: its targets, and the objective's residuals and Jacobian."""

    def __init__(self, refiner: PhotometricRefiner, fit: LandmarkFit, linear: np.ndarray, excluded):
        self.model, self.region, self.pivot = refiner.model, refiner.region, refiner.pivot
        self.prior, self.lower, self.upper, self.weight = refiner.prior, refiner.lower, refiner.upper, refiner.weight
        self.usable = unclipped(linear)
        if excluded is not None:
            self.usable &= ~excluded
        self.iod = interocular_distance(fit.landmarks)
        self.target = fit.landmarks.astype(np.float64)
        self.intrinsics = fit.intrinsics.astype(np.float64)
        self.scale = 1.0  # the photometric residual's scale: set from the start's median residual
        self.damping = 1e-3

    # --- geometry

    def geometry(self, x: np.ndarray):
        """Region vertices in camera space (R, 3), R, local (model space - pivot) (R, 3)."""
        r = self.region
        local = r.mean + (r.shape_flat @ x[6:].astype(np.float32)).reshape(-1, 3) - self.pivot  # float32: a tenth of a micron
        rotation = rotation_matrix(x[:3])
        return local @ rotation.T + x[3:6], rotation, local

    def _project(self, camera: np.ndarray) -> np.ndarray:
        fx, fy, cx, cy = self.intrinsics
        depth = -camera[:, 2]
        return np.stack([fx * camera[:, 0] / depth + cx, cy - fy * camera[:, 1] / depth], 1)

    def _normals(self, points: np.ndarray) -> np.ndarray:
        """(R, 3) area-weighted vertex normals of the region's points, not normalised."""
        t = self.region.triangles
        a = points[t[:, 0]]
        return self.region.vertex_faces @ np.cross(points[t[:, 1]] - a, points[t[:, 2]] - a)

    def _visible(self, camera: np.ndarray, uv: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """(R,) bool: in the crop, facing the camera and in front in the z-buffer."""
        h, w = self.usable.shape
        depth = -camera[:, 2]
        cells = np.floor(uv / ZBUFFER_PX).astype(np.int64)
        gw, gh = int(np.ceil(w / ZBUFFER_PX)), int(np.ceil(h / ZBUFFER_PX))
        inside = (cells[:, 0] >= 0) & (cells[:, 0] < gw) & (cells[:, 1] >= 0) & (cells[:, 1] < gh)
        key = np.where(inside, cells[:, 1] * gw + cells[:, 0], 0)
        nearest = np.full(gw * gh, np.inf)
        np.minimum.at(nearest, key[inside], depth[inside])
        facing = (normals * -camera).sum(1) > 0.1 * np.linalg.norm(camera, axis=1)
        return inside & facing & (depth <= nearest[key] + DEPTH_TOLERANCE_MM)

    # --- the objective

    def _state(self, x: np.ndarray, photo: _Photo):
        """Everything held within a step: compared vertices, their normals, albedo and light."""
        camera, rotation, local = self.geometry(x)
        uv = self._project(camera)
        normals = _unit(self._normals(camera))
        visible = self._visible(camera, uv, normals)
        compared = self.region.compared[visible[self.region.compared]]
        pixel = np.clip(np.floor(uv[compared]).astype(int), 0, np.array(self.usable.shape[::-1]) - 1)
        compared = compared[self.usable[pixel[:, 1], pixel[:, 0]]]
        landmarks = outline_landmark_vertices(self.region, uv, rotation)
        if len(compared) < MIN_COMPARED:  # the photo shows too little of the face: landmarks only
            return _State(compared, landmarks)
        colour, _ = photo.sample(uv[compared])
        basis = self.region.albedo_basis[np.searchsorted(self.region.compared, compared)]
        shading = irradiance_basis(normals[compared])
        albedo, light = _albedo_and_light(colour, basis, shading)
        return _State(compared, landmarks, basis @ albedo, light)

    def _residuals(self, x, photo, state: _State, jacobian: bool = False):
        camera, rotation, local = self.geometry(x)
        ids = np.concatenate([state.landmarks, state.compared])
        points = camera[ids]
        uv = self._project(points)
        parts = [(uv[:68] - self.target).ravel() / self.iod, self.prior[6:] * x[6:]]
        if state.albedo is not None:
            raw = self._normals(local)[state.compared]  # model space: the shading's Jacobian uses the model's normal basis
            length = np.linalg.norm(raw, axis=1, keepdims=True)
            normals = (raw / length) @ rotation.T
            colour, gradient = photo.sample(uv[68:])
            difference = colour - state.albedo * (irradiance_basis(normals) @ state.light)
            norm = np.linalg.norm(difference, axis=1)
            robust = 1 / np.sqrt(1 + (norm / (CAUCHY * self.scale)) ** 2)  # Geman-McClure: r * robust; held fixed in the Jacobian
            weight = robust[:, None] * np.sqrt(self.weight / (3 * len(state.compared))) / self.scale
            parts.insert(1, (weight * difference).ravel())
        r = np.concatenate(parts)
        if not jacobian:
            return r
        d_uv = self._projection_jacobian(x, points, rotation, local[ids], ids)  # (M, 2, P)
        rows = [d_uv[:68].reshape(136, -1) / self.iod, np.diag(self.prior)[6:]]
        if state.albedo is not None:
            d_colour = np.einsum("ncj,njp->ncp", gradient, d_uv[68:])
            d_colour -= self._shading_jacobian(x, state, raw / length, length, normals, rotation)
            rows.insert(1, (weight[..., None] * d_colour).reshape(-1, len(x)))
        return r, np.concatenate(rows)

    def _shading_jacobian(self, x, state: _State, model_normals, length, normals, rotation) -> np.ndarray:
        """(N, 3, P) d (albedo * E(n)) / d x at the compared vertices: the normals turn with the pose
        and with the shape (``face_region``'s normal basis, the derivative at the mean shape)."""
        n = len(state.compared)
        d_normal = np.zeros((n, 3, len(x)))
        for k, d in enumerate(rotation_derivatives(x[:3])):
            d_normal[:, :, k] = model_normals @ d.T
        basis = self.region.normal_basis[np.searchsorted(self.region.compared, state.compared)]  # (N, 3, K)
        tangent = (basis - model_normals[:, :, None] * np.einsum("nj,njk->nk", model_normals, basis)[:, None]) / length[..., None]
        d_normal[:, :, 6:] = rotation @ tangent
        d_irradiance = np.einsum("nbj,bc->ncj", _irradiance_gradient(normals), state.light)  # (N, 3 colours, 3)
        return np.einsum("ncj,njp->ncp", state.albedo[:, :, None] * d_irradiance, d_normal)

    def _projection_jacobian(self, x, camera, rotation, local, ids) -> np.ndarray:
        """(M, 2, P) d (u, v) / d x of camera-space points ``camera`` whose model-space - pivot is ``local``."""
        return pose_and_shape_jacobian(x[:3], rotation, local, camera, self.intrinsics, self.region.shape[ids])

    def step(self, x: np.ndarray, photo: _Photo) -> tuple[np.ndarray, bool]:
        state = self._state(x, photo)
        r, j = self._residuals(x, photo, state, jacobian=True)
        cost = float(r @ r)
        jtj, jtr = j.T @ j, j.T @ r
        # Coefficients at a bound that the step would push past it stay there (an active set):
        # clipping them afterwards would spoil the rest of the step.
        free = ~(((x <= self.lower + 1e-9) & (jtr > 0)) | ((x >= self.upper - 1e-9) & (jtr < 0)))
        jtj, jtr = jtj[np.ix_(free, free)], jtr[free]
        damping = self.damping
        for _ in range(4):
            a = jtj + damping * np.diag(np.diag(jtj) + 1e-9)
            candidate = x.copy()
            candidate[free] -= np.linalg.solve(a, jtr)
            candidate = np.clip(candidate, self.lower, self.upper)
            trial = self._residuals(candidate, photo, state)
            if float(trial @ trial) < cost:
                self.damping = max(damping / 3, 1e-6)
                return candidate, True
            damping *= 8
        self.damping = damping
        return x, False

    def errors(self, x: np.ndarray, photo: _Photo) -> _Errors:
        state = self._state(x, photo)
        camera, _, _ = self.geometry(x)
        uv = self._project(camera[state.landmarks])
        landmark = float(np.linalg.norm(uv - self.target, axis=1).mean() / self.iod)
        if state.albedo is None:
            return _Errors(landmark, None, 1.0, state)
        colour, _ = photo.sample(self._project(camera[state.compared]))
        normals = _unit(self._normals(camera))[state.compared]
        difference = colour - state.albedo * (irradiance_basis(normals) @ state.light)
        return _Errors(landmark, float(np.sqrt((difference ** 2).mean())),
                       float(np.median(np.linalg.norm(difference, axis=1))), state)

    def as_fit(self, fit: LandmarkFit, x: np.ndarray, state: _State) -> LandmarkFit:
        """``x`` as a fit; its fitted landmarks are the ones matched (the jaw's on the outline)."""
        k = self.model.num_identity
        camera, _, _ = self.geometry(x)
        fitted = self._project(camera[state.landmarks])
        distances = np.linalg.norm(fitted - self.target, axis=1)
        return replace(fit, identity=x[6:6 + k].astype(np.float32), expression=x[6 + k:].astype(np.float32),
                       rotation=x[:3].astype(np.float32), translation=x[3:6].astype(np.float32),
                       fitted_landmarks=fitted.astype(np.float32), error_px=float(distances.mean()),
                       error_iod=float(distances.mean() / self.iod))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _irradiance_gradient(n: np.ndarray) -> np.ndarray:
    """(N, 9, 3) d ``irradiance_basis(n)`` / d n."""
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    c1, c2, c3, c4 = SH_NORM[1], SH_NORM[4], SH_NORM[6], SH_NORM[8]
    _, a1, a2 = SH_BAND_FACTORS
    out = np.zeros((len(n), 9, 3))
    out[:, 1, 1] = out[:, 2, 2] = out[:, 3, 0] = a1 * c1
    out[:, 4, 0], out[:, 4, 1] = a2 * c2 * y, a2 * c2 * x
    out[:, 5, 1], out[:, 5, 2] = a2 * c2 * z, a2 * c2 * y
    out[:, 6, 2] = 6 * a2 * c3 * z
    out[:, 7, 0], out[:, 7, 2] = a2 * c2 * z, a2 * c2 * x
    out[:, 8, 0], out[:, 8, 1] = 2 * a2 * c4 * x, -2 * a2 * c4 * y
    return out


def _albedo_and_light(colour: np.ndarray, basis: np.ndarray, shading: np.ndarray, rounds: int = 4,
                      ridge: float = 1e-2):
    """(albedo coefficients (P, 3), SH light (9, 3)) with colour ~ (basis @ albedo) * (shading @ light).

    Alternating least squares from a constant ``SKIN_ALBEDO``; the albedo's mean is then scaled to
    ``SKIN_ALBEDO`` per channel (the light takes the inverse), as ``estimate_lighting`` fixes it."""
    n, p = basis.shape
    albedo = np.zeros((p, 3))
    albedo[0] = SKIN_ALBEDO
    light = _light_given_albedo(colour, basis @ albedo, shading)
    penalty = ridge * n * np.diag([0.0] + [1.0] * (p - 1))
    for _ in range(rounds):
        irradiance = shading @ light
        for c in range(3):
            design = basis * irradiance[:, c:c + 1]
            albedo[:, c] = np.linalg.solve(design.T @ design + penalty, design.T @ colour[:, c])
        light = _light_given_albedo(colour, basis @ albedo, shading)
    scale = (basis @ albedo).mean(0) / np.asarray(SKIN_ALBEDO)
    return albedo / scale, light * scale


def _light_given_albedo(colour, albedo, shading, ridge: float = 1e-3):
    penalty = ridge * np.diag([0, 1, 1, 1, 4, 4, 4, 4, 4]) * len(shading)
    light = np.empty((9, 3))
    for c in range(3):
        design = shading * albedo[:, c:c + 1]
        light[:, c] = np.linalg.solve(design.T @ design + penalty, design.T @ colour[:, c])
    return light
