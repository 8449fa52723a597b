"""The picture of a photo-realistic sample: the re-rendered face composited into its warped photo.

``PhotoComposer.compose`` does, for one sample (all at the output size, pixel centres at i + 0.5):

1. **Warp** the photo and its layers with the head: a smooth 2D field (thin-plate spline, scipy)
   through the displacements of a fixed set of head vertices (those the photo shows) from the
   photo's fitted pose to the new one, pinned to zero along the image border, so that the head drags the nearby hair and
   background with it and the far background stays put. The layers warped with it: where the
   photo's own face was, which of its face pixels show something else in front of the skin
   (``skin_mask``: hair, glasses frames; entries fitted before the skin mask have none), and
   which show skin.
2. **The face from the photo itself** (ratio-image relighting, Wen et al. 2003): a face pixel
   whose surface point the fitted photo shows takes the photo's colour there, times the ratio of
   the new irradiance to the fitted one at its normal (step 4; 1 under the photo's own light).
   The point is followed through the pose change and, by its nearest vertex, through the
   expression change, then projected into the fitted photo, whose render must show the same part
   there at the same depth. Since albedo = photo / E_fitted, this is the albedo render
   albedo x E_new without the texture's resampling, clamps and rejections, and it gives the
   photo's own eyes, mouth interior and teeth, which the albedo map does not hold. Where the
   photo does not show the point (the side it did not see, teeth a new expression shows, a
   closed eye opened) the albedo render stays (eyes and teeth procedural). With fine detail
   (``[sampling.detail]``) the ratio is taken at the fine normals, the sample's over the ones the
   photo shows there (its fitted face rendered with its own extracted detail): the photo's own
   wrinkles are shaded again under the new light, and the creases of the new expression (and a
   donor's detail) shade where they form; unchanged light and relief give a ratio of 1.
3. **The photo's occluders stay on the face**: a face pixel whose surface point the photo shows
   under its hair or glasses (step 2's projection lands on an occluder of the photo's skin mask:
   what entered the face from the forehead or the temples) takes that colour, unrelit, as if the
   fringe or the frame lay on the skin; its label becomes ``photo_occluder`` (its depth and
   normal stay the face's, the surface it lies on) and a landmark under it counts as hidden.
4. **Relighting the rest of the skin**: with a new light, the photo's skin that the face does not
   replace (neck, ears, the head's skin around the face) is scaled by the ratio of the new
   irradiance to the fitted one at the rendered normal, so that it matches the relit face.
5. **No trace of the old face**: the pixels the photo's own face covered (warped; ``RIM_PX`` wider
   where the warp moves it) and the new face does not (a jaw that closed, a face turned away) show the new head's own surface where it
   covers them and the photo shows that point (the neck under a closed jaw, as in step 2), and
   elsewhere the photo around them continued inwards (``mirror_fill``: hair or background
   mirrored across the old face's border), so no old chin or mouth shows. Where nothing moves,
   nothing is filled (a sample that changes nothing is the photo: bench/photoreal.py).
6. **Seamless boundary** (gradient domain): the log ratio of photo to render just outside the
   face's border, where both show the head's skin (forehead, temples, under the jaw), is
   interpolated smoothly over the face (a membrane by the push-pull pyramid, an approximation of
   the Laplace solution that Poisson cloning uses) and the face multiplied by it: the face keeps
   its own gradients (texture, shading) and meets the photo at its border; then it is blended
   over the photo with its edge feathered inwards.

As in Guo et al., the re-rendered face replaces the photo's face only (the face parts inside the
jaw line and the brows raised halfway to the hairline); hair, ears and neck come from the photo.
The ground truth describes the whole head's surface.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.interpolate import RBFInterpolator
from scipy.ndimage import binary_dilation, distance_transform_edt, gaussian_filter, map_coordinates, zoom
from scipy.spatial import cKDTree

from ..images import polygon_mask
from ..camera import irradiance_basis, project, resize_intrinsics, rotation_matrix, to_camera
from ..models.morphable_model import MorphableModel
from ..synth.detail import OWN_PHOTO_DETAIL
from ..synth.face_parts import LABEL, MATERIAL, face_parts
from ..synth.geometry import build_scenes
from .skin_mask import entering
from ..synth.uv_layout import push_pull_fill
from .texture import linear_to_srgb, srgb_to_linear

WARP_POINTS = 400
GRID = 32  # the warp field is evaluated on a GRID x GRID lattice, then interpolated
SMOOTHING = 50.0  # thin-plate smoothing: a gentle field, not one that wiggles through every point
NOT_REPLACED = (LABEL["background"], LABEL["head_neck"])
HEAD_SKIN = (LABEL["skin"], LABEL["nose"], LABEL["head_neck"])
FACE_FEATURES = tuple(LABEL[n] for n in ("nose", "brow_right", "brow_left", "eye_right", "eye_left", "upper_lip",
                                         "lower_lip", "mouth_interior", "teeth"))
PHOTO_FEATURES = tuple(LABEL[n] for n in ("eye_right", "eye_left", "mouth_interior", "teeth"))
FEATURE_DEPTH_TOLERANCE_MM = 3.0
WARP_DEPTH_TOLERANCE_MM = 5.0
MAX_SEAM_GAIN = 1.6
RIM_PX = 2  # the old face's outline counts this much wider where the warp moves it (a warp blurs an edge)
MOVING_PX = 0.5  # ... i.e. where it shifts the photo by more than this
MATCHED = 12  # sRGB levels
MAX_RELIGHT_RATIO = 2.0
RELIGHT_REACH = 0.25  # the photo's skin is relit less the farther it is from the face, by e^(-distance / (this x face size))  # the fitted light is least known far from the face's normals
FEATHER_PX = 2.0
LUMINANCE = np.array([0.2126, 0.7152, 0.0722])
CACHED_PHOTOS = 64  # prepared photos kept per worker (least recently used dropped)


def warp_vertex_ids(model: MorphableModel, count: int = WARP_POINTS) -> np.ndarray:
    """About ``count`` drawn skin vertices (face, head, neck), evenly spread over the vertex list."""
    parts = face_parts(model)
    drawn = np.unique(model.triangles[parts.drawn_triangles])
    skin = drawn[parts.material[drawn] == MATERIAL["skin"]]
    return skin[np.linspace(0, len(skin) - 1, min(count, len(skin))).astype(int)]


@dataclass(frozen=True)
class PhotoLayers:
    """One fitted photo prepared at the output size (its fitted face rendered once)."""

    image: np.ndarray  # (H, W, 3) uint8
    linear: np.ndarray  # (H, W, 3) float32: the same in linear RGB
    warp_ids: np.ndarray  # (N,) the warp vertices the photo shows (the far side of the head would pull the wrong way)
    fitted_points: np.ndarray  # (N, 2) they, projected in the fitted pose
    face: np.ndarray  # (H, W) bool: the photo's own face (face_mask of its fitted render)
    occluder: np.ndarray  # (H, W) bool: skin pixels showing something on the skin (hair, glasses)
    skin: np.ndarray  # (H, W) bool: pixels of the head's skin that show skin
    matched: np.ndarray  # (H, W) bool: skin pixels that the fitted face, re-rendered, gives back (within MATCHED)
    segmentation: np.ndarray  # (H, W) uint8: the fitted render's labels
    depth: np.ndarray  # (H, W) float32 mm
    normal: np.ndarray  # (H, W, 3) float32 camera space: the fitted surface's
    fine_normal: np.ndarray  # (H, W, 3) the same with the photo's own detail (datagen fit's), where it has one
    vertices: np.ndarray  # (V, 3) model space, the fitted identity and expression
    rotation: np.ndarray
    translation: np.ndarray
    intrinsics: np.ndarray  # (4,) at the output size
    light_sh: np.ndarray  # (9, 3)
    greyscale: bool


def face_mask(segmentation: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: what a re-rendered face replaces: the rendered face parts (not head and neck)
    inside the jaw line and the brows raised halfway to the hairline, and wherever its nose, brows,
    eyes, lips or mouth are drawn (a turned face's nose passes its jaw line)."""
    brows = landmarks[17:27][::-1]
    raised = brows + 0.6 * (brows - landmarks[33])  # away from the nose base: the forehead
    outline = polygon_mask(segmentation.shape, np.concatenate([landmarks[:17], raised]))
    return (outline & ~np.isin(segmentation, NOT_REPLACED)) | np.isin(segmentation, FACE_FEATURES)


class PhotoComposer:
    """Per worker: the model's warp and feature vertices; per photo, its layers (made on first use)."""

    def __init__(self, photos: list, model: MorphableModel, renderer):
        self.photos, self.model, self.renderer = photos, model, renderer
        self.width, self.height = renderer.width, renderer.height
        self.ids = warp_vertex_ids(model)
        parts = face_parts(model)
        drawn = np.unique(model.triangles[parts.drawn_triangles])
        self.surface_ids = drawn[parts.labels[drawn] != LABEL["background"]]  # what a pixel can show
        self._layers: OrderedDict[int, PhotoLayers] = OrderedDict()

    def layers(self, index: int) -> PhotoLayers:
        if index not in self._layers:
            load = getattr(self.photos, "load", self.photos.__getitem__)  # a PhotoCatalogue, or FittedPhotos
            self._layers[index] = self._prepare(load(index))
            while len(self._layers) > CACHED_PHOTOS:
                self._layers.popitem(last=False)
        self._layers.move_to_end(index)
        return self._layers[index]

    def _prepare(self, photo) -> PhotoLayers:
        w, h, fit = self.width, self.height, photo.fit
        intrinsics = resize_intrinsics(fit.intrinsics, photo.crop.shape[0], w, h).astype(np.float32)
        params = dataclasses.replace(photo.params(), intrinsics=intrinsics)
        own_detail = self.renderer.detail is not None and getattr(photo, "detail", None) is not None
        if own_detail:  # the surface the photo shows: its own relief (datagen fit's detail), as fitted
            params = dataclasses.replace(params, detail=OWN_PHOTO_DETAIL)
        scenes = build_scenes(self.model, [params], [photo.albedo], topology=self.renderer.topology,
                              detail_maps=[photo.detail] if own_detail else None)
        truth = self.renderer.render(scenes)
        segmentation = truth.segmentation[0]
        image = np.asarray(Image.fromarray(photo.crop).resize((w, h), Image.LANCZOS))
        channels = photo.crop.astype(np.int16)
        excluded, occluding = (self._resized(m, photo.crop.shape[:2]) for m in (photo.excluded, photo.occluding))
        face = face_mask(segmentation, scenes.landmarks_2d[0])
        # what lies on the head's skin: beyond the face all of it, inside it what entered the face
        occluder = (occluding & ~face) | entering(face & occluding, face, scenes.landmarks_2d[0])
        vertices = self.model.vertices(fit.identity, fit.expression)
        skin = np.isin(segmentation, HEAD_SKIN) & ~excluded
        error = np.abs(truth.colour[0][..., :3].astype(np.int16) - image).max(-1)
        points = project(scenes.vertices[:, self.ids], intrinsics[None])[0]
        c, r = (np.clip(np.floor(points[:, k]).astype(int), 0, n - 1) for k, n in ((0, w), (1, h)))
        shown = np.abs(truth.depth[0][r, c] + scenes.vertices[0, self.ids, 2]) < WARP_DEPTH_TOLERANCE_MM
        if shown.sum() < 20:  # too few to steer a warp: all of them
            shown[:] = True
        return PhotoLayers(
            image=image, linear=srgb_to_linear(image), warp_ids=self.ids[shown], fitted_points=points[shown],
            face=face, occluder=occluder,
            skin=skin, matched=skin & (error <= MATCHED),
            segmentation=segmentation, depth=truth.depth[0],
            normal=truth.normal[0], fine_normal=(truth.normal_fine if truth.normal_fine is not None else truth.normal)[0],
            vertices=vertices,
            rotation=np.asarray(fit.rotation, np.float64), translation=np.asarray(fit.translation, np.float64),
            intrinsics=intrinsics, light_sh=np.asarray(photo.light_sh, np.float64),
            greyscale=bool(np.abs(channels - channels.mean(-1, keepdims=True)).max() <= 2))

    def _resized(self, mask, shape) -> np.ndarray:
        """A crop-sized mask (None: nothing) at the output size."""
        mask = np.zeros(shape, bool) if mask is None else mask
        return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((self.width, self.height),
                                                                             Image.BILINEAR)) > 127

    def warp(self, index: int, camera_vertices: np.ndarray, intrinsics) -> np.ndarray:
        """(H, W, 2) the backward shift that makes photo ``index`` follow a head at ``camera_vertices``."""
        layers = self.layers(index)
        new_points = project(camera_vertices[layers.warp_ids][None], np.asarray(intrinsics)[None])[0]
        return warp_field(layers.fitted_points, new_points, self.height, self.width)

    def compose(self, index: int, colour: np.ndarray, segmentation: np.ndarray, depth: np.ndarray,
                normal: np.ndarray, camera_vertices: np.ndarray, landmarks: np.ndarray, params,
                fine_normal: np.ndarray | None = None, field: np.ndarray | None = None):
        """(picture (H, W, 3) uint8, segmentation (H, W) uint8) of one sample (see the module doc).

        colour, segmentation, depth, normal: the sample's render; camera_vertices (V, 3) and
        landmarks (68, 2) its scene's; params its FaceParams; fine_normal: its ``normal_fine`` where
        it has fine detail (the face taken from the photo is then shaded by its relief, step 2); field:
        its ``warp`` if already made.
        """
        layers = self.layers(index)
        field = self.warp(index, camera_vertices, params.intrinsics) if field is None else field
        warped = warp_layers(np.dstack([layers.linear, layers.face, layers.skin, layers.matched]).astype(np.float32), field)
        photo, (old_face, skin, matched) = warped[..., :3], (warped[..., k] > 0.5 for k in (3, 4, 5))
        rendered = srgb_to_linear(colour[..., :3])
        if layers.greyscale:  # a black-and-white photo gets a black-and-white face
            rendered = np.repeat(rendered @ LUMINANCE[:, None], 3, -1)
        relit = not np.array_equal(np.asarray(params.light_sh, np.float64), layers.light_sh)
        drawn = segmentation != LABEL["background"]
        ratio = self._relight_ratio(layers, params, normal, drawn) if relit else None

        face = face_mask(segmentation, landmarks)
        head_skin = np.isin(segmentation, HEAD_SKIN) & ~face
        moving = binary_dilation(np.linalg.norm(field, axis=-1) > MOVING_PX, iterations=RIM_PX)
        old_face |= binary_dilation(old_face, iterations=RIM_PX) & moving  # with its rim where the warp blurs the edge
        nearby = old_face & drawn & ~face  # hole pixels the new head may cover
        normals = (normal, fine_normal) if fine_normal is not None else None
        taken, hidden = self._from_photo(layers, segmentation, depth, camera_vertices, params, face | nearby, ratio,
                                         normals)
        front = face & hidden  # the photo's hair or glasses lie on this point of the face: they stay
        face &= ~front
        segmentation = np.where(front, LABEL["photo_occluder"], segmentation).astype(np.uint8)
        photo[front] = taken[front]
        taken[front] = np.nan
        if relit:  # the photo's skin around the face, under the new light, fading out away from it
            photo *= relight_around(ratio, skin & head_skin, face)
        hole = old_face & ~face & ~front  # the old face, uncovered
        if hole.any():
            beyond = ~binary_dilation(old_face, iterations=RIM_PX) | front  # clear of the old face's rim
            photo[hole] = mirror_fill(photo, beyond, hole)
            own = hole & drawn & ~np.isnan(taken[..., 0])  # the new head's own surface, as the photo shows it
            photo[own] = taken[own]  # (under a closed jaw: the neck)
        ring = binary_dilation(face, iterations=2) & head_skin & ~hole & matched
        rendered = seamless(rendered, taken, photo, ring, face)
        alpha = np.minimum(gaussian_filter(face.astype(np.float32), FEATHER_PX), face)[..., None]  # inwards only
        alpha = alpha * (colour[..., 3:4] / 255.0)
        return linear_to_srgb(alpha * rendered + (1 - alpha) * photo), segmentation

    def _relight_ratio(self, layers, params, normal, drawn):
        """(H, W, 3) new irradiance over the photo's at each rendered normal (the same surface
        normal in the fitted pose), clipped to [1 / MAX_RELIGHT_RATIO, MAX_RELIGHT_RATIO]; 1 off the head."""
        n = normal[drawn].astype(np.float64)
        back = rotation_matrix(layers.rotation) @ rotation_matrix(params.rotation).T  # new camera -> fitted camera
        new = irradiance_basis(n) @ np.asarray(params.light_sh, np.float64)
        old = irradiance_basis(n @ back.T) @ layers.light_sh
        if layers.greyscale:  # a black-and-white photo is relit in brightness only
            new, old = new @ LUMINANCE[:, None], old @ LUMINANCE[:, None]
        ratio = np.ones(normal.shape, np.float32)
        ratio[drawn] = np.clip(new / np.maximum(old, 1e-4), 1 / MAX_RELIGHT_RATIO, MAX_RELIGHT_RATIO)
        return ratio

    @staticmethod
    def relief_ratio(layers, params, new: tuple, old: tuple) -> np.ndarray:
        """(N, 3) how the relief's shading changes: the new light's irradiance at the sample's fine
        normals over that at its coarse ones, divided by the same of the photo's light at the fine
        and coarse normals the photo shows those points with (``new``, ``old``: (coarse, fine) (N, 3)
        each). The photo's own wrinkles are shaded again under the new light, a new crease shades
        where it forms; 1 where neither the light nor the relief changed. The coarse shading's
        change is the relighting ratio's, as without detail."""
        def shading(light, coarse, fine):
            e = irradiance_basis(np.concatenate([coarse, fine]).astype(np.float64)) @ np.asarray(light, np.float64)
            if layers.greyscale:
                e = e @ LUMINANCE[:, None]
            e = np.maximum(e, 1e-4)
            return e[len(coarse):] / e[:len(coarse)]

        ratio = shading(params.light_sh, *new) / shading(layers.light_sh, *old)
        return np.clip(ratio, 1 / MAX_RELIGHT_RATIO, MAX_RELIGHT_RATIO)

    def _from_photo(self, layers, segmentation, depth, camera_vertices, params, pixels, ratio, normals=None):
        """(taken (H, W, 3) linear, hidden (H, W) bool) for ``pixels``: the photo's colour where it
        shows their surface point (times the relighting ratio where it shows the face or its skin;
        NaN where it does not show the point: the albedo render stays there), and which of them
        the photo shows under its own hair or glasses (``skin_mask``: the colour is theirs).
        ``normals``: the sample's (coarse, fine) normals where it has fine detail: the ratio then also
        carries the relief's change of shading (``relief_ratio``)."""
        taken = np.full(segmentation.shape + (3,), np.nan, np.float32)
        hidden = np.zeros(segmentation.shape, bool)
        rows, cols = np.nonzero(pixels)
        if not len(rows):
            return taken, hidden
        fx, fy, cx, cy = (float(v) for v in params.intrinsics)
        d = depth[rows, cols].astype(np.float64)
        camera = np.stack([(cols + 0.5 - cx) * d / fx, -(rows + 0.5 - cy) * d / fy, -d], 1)
        rotation = rotation_matrix(params.rotation)
        pivot = self.model.pivot.astype(np.float64)
        local = (camera - params.translation) @ rotation + pivot  # R^T (p - t) + pivot, as rows
        face_now = (camera_vertices[self.surface_ids].astype(np.float64) - params.translation) @ rotation + pivot
        _, nearest = cKDTree(face_now).query(local)
        local += layers.vertices[self.surface_ids[nearest]] - face_now[nearest]  # the photo's expression
        then = to_camera(local, pivot, layers.rotation, layers.translation)
        uv = project(then[None], layers.intrinsics[None].astype(np.float64))[0]
        c, r = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        h, w = segmentation.shape
        inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
        c, r = np.clip(c, 0, w - 1), np.clip(r, 0, h - 1)
        shown = inside & (layers.segmentation[r, c] == segmentation[rows, cols])
        shown &= np.abs(layers.depth[r, c] + then[:, 2]) < FEATURE_DEPTH_TOLERANCE_MM
        under = shown & layers.occluder[r, c]
        shown &= under | layers.face[r, c] | layers.skin[r, c]
        if not shown.any():
            return taken, hidden
        at = [uv[shown, 1] - 0.5, uv[shown, 0] - 0.5]  # pixel centres: index i is centre i + 0.5
        colours = np.stack([map_coordinates(layers.linear[..., k], at, order=1, mode="nearest") for k in range(3)], -1)
        if normals is not None:
            at_new, at_old = (rows[shown], cols[shown]), (r[shown], c[shown])
            relief = self.relief_ratio(layers, params, (normals[0][at_new], normals[1][at_new]),
                                       (layers.normal[at_old], layers.fine_normal[at_old]))
            ratio = np.ones(segmentation.shape + (3,), np.float32) if ratio is None else ratio.copy()
            ratio[at_new] = np.clip(ratio[at_new] * relief, 1 / MAX_RELIGHT_RATIO, MAX_RELIGHT_RATIO)
        if ratio is not None:  # the skin is relit, the hair or glasses on it are the photo's
            ratio = ratio[rows[shown], cols[shown]]
            inner = np.isin(segmentation[rows[shown], cols[shown]], PHOTO_FEATURES)
            if inner.any() and (~inner).any():  # eyes, mouth and teeth: the face's median ratio (their
                ratio[inner] = np.median(ratio[~inner], 0)  # normals' fitted light is least known)
            colours *= np.where(under[shown, None], 1.0, ratio)
        taken[rows[shown], cols[shown]] = colours
        hidden[rows[under], cols[under]] = True
        return taken, hidden


def seamless(rendered: np.ndarray, taken: np.ndarray, photo: np.ndarray, ring: np.ndarray,
             region: np.ndarray) -> np.ndarray:
    """The face over ``region`` (H, W, 3 linear): ``taken`` (the photo's colours, NaN where it did
    not show the point) where known, elsewhere the albedo ``rendered`` times a smooth gain that
    makes it meet its surroundings: the log ratio of the photo's colour to the render's at the
    taken pixels and along ``ring`` (just outside the region, where the photo and the render both
    show the head's skin), interpolated by the push-pull membrane (gradient-domain blending: the
    render keeps its own gradients) and clipped to [1 / MAX_SEAM_GAIN, MAX_SEAM_GAIN]."""
    have = region & ~np.isnan(taken[..., 0])
    out = np.where(have[..., None], np.nan_to_num(taken), rendered)
    rest = region & ~have
    known = have | ring
    if not rest.any() or not known.any():
        return out
    limit = np.log(MAX_SEAM_GAIN)
    log_gain = np.zeros_like(rendered)
    target = np.where(have[..., None], out, photo)
    log_gain[known] = np.clip(np.log(target[known] + 1e-3) - np.log(rendered[known] + 1e-3), -limit, limit)
    gain = np.exp(push_pull_fill(log_gain, known))
    out[rest] = rendered[rest] * gain[rest]
    return out


def relight_around(ratio: np.ndarray, skin: np.ndarray, face: np.ndarray) -> np.ndarray:
    """(H, W, 3) factors for the photo: ``ratio`` on its ``skin`` near the ``face``, softened at
    the skin's edges (2 px) and fading to 1 over RELIGHT_REACH of the face's size away from it,
    so that the skin next to the face matches it and nothing far from it changes abruptly."""
    if not face.any():
        return np.ones_like(ratio)
    reach = RELIGHT_REACH * np.sqrt(face.sum())
    weight = gaussian_filter(skin.astype(np.float32), 2.0) * np.exp(-distance_transform_edt(~face) / reach)
    return np.exp(weight[..., None] * np.log(ratio))


def mirror_fill(image: np.ndarray, known: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(N, C) values for ``pixels`` of ``image`` (H, W, C) from the ``known`` ones around them: each
    takes the pixel mirrored across its nearest known pixel (the surroundings' texture, hair or
    background, continued inwards), or that nearest pixel where the mirror is not known either."""
    h, w = known.shape
    if not known.any():  # the old face filled the frame: nothing around it to continue
        return image[pixels]
    nearest = distance_transform_edt(~known, return_distances=False, return_indices=True)
    rows, cols = np.nonzero(pixels)
    qr, qc = nearest[0][rows, cols], nearest[1][rows, cols]
    mr, mc = np.clip(2 * qr - rows, 0, h - 1), np.clip(2 * qc - cols, 0, w - 1)
    use = known[mr, mc]
    return np.where(use[:, None], image[mr, mc], image[qr, qc])


def warp_field(old: np.ndarray, new: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W, 2) the backward shift that moves content at points ``old`` to ``new`` (pixels, (N, 2))."""
    border = np.linspace(0, 1, 9)
    anchors = np.concatenate([np.stack([border * w, np.zeros(9)], 1), np.stack([border * w, np.full(9, h)], 1),
                              np.stack([np.zeros(9), border * h], 1), np.stack([np.full(9, w), border * h], 1)])
    inside = np.all((new > -0.25 * w) & (new < 1.25 * w), axis=1)  # far-off points only stiffen the fit
    points = np.concatenate([new[inside], anchors])
    shift = np.concatenate([(new - old)[inside], np.zeros_like(anchors)])
    field = RBFInterpolator(points, shift, kernel="thin_plate_spline", smoothing=SMOOTHING)
    gy, gx = np.meshgrid(np.linspace(0, h, GRID), np.linspace(0, w, GRID), indexing="ij")
    coarse = field(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(GRID, GRID, 2)
    return np.stack([zoom(coarse[..., c], (h / GRID, w / GRID), order=1, mode="nearest", grid_mode=True)
                     for c in range(2)], -1)[:h, :w]


def warp_layers(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``image`` (H, W[, C]) backward-warped by ``field`` (``warp_field``), in its dtype."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    source = [ys - field[..., 1], xs - field[..., 0]]  # pixel centres cancel: index i is centre i + 0.5
    if image.ndim == 2:
        return map_coordinates(image, source, order=1, mode="nearest")
    return np.stack([map_coordinates(image[..., c], source, order=1, mode="nearest") for c in range(image.shape[2])], -1)
