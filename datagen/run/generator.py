"""Run the stages in one process: sample parameters -> scenes -> render -> background -> capture -> annotate, in batches.

``FaceGenerator`` holds what is set up once per process (model, renderer, background list);
``samples(indices)`` returns those samples as a ``data.fields.SampleBatch`` (``generate``: its
arrays as a dict). In a video job a sample is a clip: its frames' parameters follow the still's
(synth/motion.py), are rendered together with where each pixel's point goes (synth/flow.py), and
annotated frame by frame. Preview, the dask workers and the benchmarks all go through it.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from ..data.clip_preview import clip_preview
from ..data.preview import contact_sheet, detail_strips
from ..synth.annotate import annotate, annotate_clip
from ..synth.flow import clip_flow, clip_motion, invert_warp_flow
from ..synth.motion import clip_params
from ..errors import DatagenError
from ..synth.background import MIN_WINDOW, composite, list_background_images, make_background
from ..synth.capture import apply_capture, defocus_background
from ..data.fields import SampleBatch, frame_fields, shard_fields
from ..synth.geometry import build_scenes, check_props
from ..models.registry import resolve_model
from ..models.morphable_model import MorphableModel
from ..synth.device_background import device_pattern, paints
from ..synth.device_geometry import geometry_on_device
from ..synth.gpus import create_context, describe_context
from ..synth.render import Renderer
from ..photo.photoreal import PhotoComposer
from ..photo.library import load_photos
from ..photo.library_sources import library_lights, photo_backgrounds
from ..synth.sampling import MADE_BACKGROUND, PHOTO_BACKGROUND, FaceParams, sample_face
from ..spec import JobSpec


class FaceGenerator:
    def __init__(self, spec: JobSpec, model: MorphableModel, renderer: Renderer | None = None):
        self.spec, self.model = spec, model
        r = spec.render
        check_props(spec, model)
        detail = spec.sampling.detail
        ctx = renderer.ctx if renderer is not None else create_context()
        try:
            self.on_device = geometry_on_device(r.geometry, ctx, spec.host_mesh_needed())
        except DatagenError:
            if renderer is None:
                ctx.release()
            raise
        self.renderer = renderer or Renderer(model, r.width, r.height, r.msaa, r.supersample, ctx=ctx,
                                             detail_size=detail.resolution if detail.probability > 0 else 0,
                                             flow=spec.video.is_clip, geometry_on_device=self.on_device)
        if self.on_device:  # the device path: meshes and made backgrounds on the device
            self.renderer.use_device_geometry()
            self.renderer.use_device_backgrounds()
        if self.on_device and not self.renderer.detail:
            # float16 normals made on the device: numpy's bits, half the read-back, no conversion on the
            # host (with fine detail, whose normals come from another attachment, a render's stay float32)
            self.renderer.use_half_normals()
        self.background_images = background_images(spec)
        libraries = [path for _, path in spec.texture_libraries()]
        self.photos = load_photos(libraries, model)  # pictures read when a sample uses them
        donors = [spec.path(w) for w in detail.donor_libraries] if detail.probability > 0 else []
        self.donors = load_photos(donors, model) if donors else []
        self.lights = library_lights(spec.lighting_libraries())
        self.composer = PhotoComposer(self.photos, model, self.renderer) if spec.photoreal.library else None
        self.fields = shard_fields(spec, model)
        self.frame_fields = frame_fields(spec, model, pairs=False)
        self._background = (None, None)  # ((sample index, background choice), its image): a clip's frames share it

    @property
    def device(self) -> str:
        """What this generator renders on, in words (GL renderer, and how the EGL device was chosen)."""
        from ..synth.gpus import egl_device

        where = "on the device" if self.on_device else "with numpy"
        return f"{describe_context(self.renderer.ctx)}; {egl_device().how}; geometry {where}"

    def sample_params(self, index: int) -> FaceParams:
        return sample_face(self.spec, self.model, index, len(self.background_images), self.photos, self.lights,
                           len(self.donors))

    def generate(self, indices, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """The arrays of samples ``indices``: {field name: (N, ...) array} for every field the job writes."""
        return dict(self.samples(indices, batch_size))

    def samples(self, indices, batch_size: int | None = None) -> SampleBatch:
        """Samples ``indices`` as the annotate stage's ``SampleBatch`` (checked against ``fields``)."""
        parts = list(self.batches(indices, batch_size))
        if len(parts) == 1:
            return parts[0]
        return SampleBatch({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})

    def batches(self, indices, batch_size: int | None = None):
        """``samples`` a batch at a time (an iterator of ``SampleBatch``), pipelined: batch b + 1 is
        drawn (its read-back queued) before batch b is composited and annotated, so a GPU draws while
        the host works (synth/readback.py); each sample's arrays are the same in any batch."""
        indices = list(indices)
        batch_size = batch_size or self.spec.cluster.batch_size
        chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        if self.spec.video.is_clip:
            yield from (self._clips(chunk) for chunk in chunks)
            return
        waiting = None
        for chunk in chunks:
            submitted = self._submit([self.sample_params(i) for i in chunk])
            if waiting is not None:
                yield self._annotated(*waiting)
            waiting = submitted
        if waiting is not None:
            yield self._annotated(*waiting)

    def clip_params(self, index: int) -> list[FaceParams]:
        """The frames of clip ``index`` (a still job's: ``[sample_params(index)]``)."""
        return clip_params(self.spec, self.model, self.sample_params(index), self.photos)

    def _clips(self, indices) -> SampleBatch:
        clips = [self.render_clip(self.clip_params(i)) for i in indices]
        return SampleBatch({key: np.concatenate([c[key] for c in clips]) for key in clips[0]})

    def render_params(self, params: list[FaceParams]) -> SampleBatch:
        """The samples of these parameters (``sample_params``' or changed ones, as the detail preview's)."""
        return self._annotated(*self._submit(params))

    def _annotated(self, params, scenes, pending) -> SampleBatch:
        scenes, rendered, images, _ = self._pictures(params, scenes, pending.result())
        return annotate(params, scenes, rendered, images, self.fields)

    def render_clip(self, frames: list[FaceParams]) -> SampleBatch:
        """One clip (a batch of one sample) from its frames' parameters (``clip_params``, or any >= 2 frames)."""
        scenes, rendered, images, backgrounds = self._render(frames, clip=True)
        per_frame = annotate(frames, scenes, rendered, images, self.frame_fields)
        if backgrounds[0] is None:  # a made background: shifted by the camera shake alone
            shift = np.diff(scenes.intrinsics[:, 2:], axis=0)
            forward, backward = shift[:, None, None], -shift[:, None, None]
        else:  # a photo-realistic clip's: the photo warp's own motion
            forward = [invert_warp_flow(a, b) for a, b in zip(backgrounds, backgrounds[1:])]
            backward = [invert_warp_flow(b, a) for a, b in zip(backgrounds, backgrounds[1:])]
        fields = self.fields
        if len(frames) != self.spec.video.frames:  # a clip of another length (previews, tests)
            video = dataclasses.replace(self.spec.video, frames=len(frames))
            fields = shard_fields(dataclasses.replace(self.spec, video=video), self.model)
        return annotate_clip(per_frame, clip_flow(rendered, forward, backward), fields)

    def _render(self, params: list[FaceParams], clip: bool = False):
        """(scenes, rendered, images, photo warp fields or Nones) of samples, or of one clip's frames."""
        params, scenes, pending = self._submit(params, clip)
        return self._pictures(params, scenes, pending.result(), clip)

    def _submit(self, params: list[FaceParams], clip: bool = False):
        """(params, scenes, the renderer's pending batch): the scenes built and drawn, their pixels on the way."""
        albedo_maps = [self.photos.load(p.albedo_source).albedo if p.albedo_source >= 0 else None for p in params]
        detail_maps = [self._photo_detail(p.detail.photo) if p.detail.photo >= 0 else None for p in params]
        scenes = build_scenes(self.model, params, albedo_maps, self.renderer.topology, detail_maps, self.on_device)
        return params, scenes, self.renderer.submit(scenes, clip_motion(scenes) if clip else None, self._painted(params))

    def _painted(self, params: list[FaceParams]) -> list | None:
        """What the device paints: per sample its made background's pattern or None; None when it paints none."""
        r = self.spec.render
        if not (self.on_device and paints(r.width, r.height)):
            return None
        patterns = [device_pattern(self.spec.seed, p.sample_index) if p.background[0] == MADE_BACKGROUND else None
                    for p in params]
        return patterns if any(p is not None for p in patterns) else None

    def _pictures(self, params, scenes, rendered, clip: bool = False):
        """(scenes, rendered, images, photo warp fields or Nones): the rendered faces over their backgrounds."""
        first = params[0].intrinsics if clip else None
        pictures = [self._picture(rendered, scenes, k, p, first) for k, p in enumerate(params)]
        # a photo-realistic picture keeps the photo's hair or glasses over the face: relabelled
        rendered = dataclasses.replace(rendered, segmentation=np.stack([s for _, s, _ in pictures]))
        return scenes, rendered, np.stack([image for image, _, _ in pictures]), [f for _, _, f in pictures]

    def _photo_detail(self, k: int):
        """The detail map of detail photo ``k`` (the job's photos, then the donors'); None for an entry
        fitted before detail maps (``run_job`` says so once: ``library_sources.libraries_without_detail``)."""
        n = len(self.photos)
        return (self.photos.load(k) if k < n else self.donors.load(k - n)).detail

    def _picture(self, rendered, scenes, k: int, p: FaceParams, first_intrinsics):
        """(the face over its background as the sample's camera records it, its segmentation, the photo's
        warp field or None). A clip's frames share the background, shifted by the camera shake since
        its first frame (``first_intrinsics``; None for stills)."""
        field = None
        if p.background[0] == PHOTO_BACKGROUND:
            field = self.composer.warp(int(p.background[1]), scenes.vertices[k], p.intrinsics)
            picture, segmentation = self.composer.compose(
                int(p.background[1]), rendered.colour[k], rendered.segmentation[k], rendered.depth[k],
                rendered.normal[k], scenes.vertices[k], scenes.landmarks_2d[k], p,
                rendered.normal_fine[k] if rendered.normal_fine is not None else None, field)  # none: the photo's relief out
        else:  # a fitted photo's background was in focus when it was taken; a made one is defocused
            painted = rendered.background is not None and p.background[0] == MADE_BACKGROUND
            background = rendered.background[k] if painted else self._made_background(p)
            if first_intrinsics is not None:
                background = shifted(background, np.asarray(p.intrinsics[2:]) - first_intrinsics[2:])
            picture = composite(rendered.colour[k], defocus_background(background, p.capture))
            segmentation = rendered.segmentation[k]
        return apply_capture(picture, p.capture, self.spec.seed, p.sample_index, p.frame), segmentation, field

    def _made_background(self, p: FaceParams) -> np.ndarray:
        key, image = self._background
        if key != (p.sample_index, tuple(p.background)):
            image = make_background(self.spec.seed, p.sample_index, p.background, self.background_images,
                                    self.spec.render.width, self.spec.render.height)
            self._background = ((p.sample_index, tuple(p.background)), image)
        return image


def shifted(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with its content moved by ``shift`` (dx, dy) pixels (bilinear; edges repeat)."""
    if not np.any(shift):
        return image
    from scipy.ndimage import shift as move

    return np.stack([move(image[..., c].astype(np.float32), (shift[1], shift[0]), order=1, mode="nearest")
                     for c in range(3)], -1).round().clip(0, 255).astype(np.uint8)


def background_images(spec: JobSpec) -> list:
    """The job's background photos: its ``images_dir``'s, then its background texture libraries'."""
    prior = spec.sampling.background
    if prior.kind == "procedural":
        return []
    libraries = [spec.path(path) for path in prior.texture_libraries]
    images = list_background_images(spec, photo_backgrounds(libraries))
    if not images:  # only libraries named, and none of their photos has room beside the head
        raise DatagenError(f"sampling.background: no background images: the photos of {', '.join(libraries)} have "
                           f"no square of {MIN_WINDOW} pixels beside the head; add images_dir")
    return images


_per_thread = threading.local()


def cached_generator(spec: JobSpec, model_dir: str | None) -> FaceGenerator:
    """One generator per thread and job: the model and the GL context are made once.

    Per thread because an OpenGL context is current in the thread that made it: a dask worker
    runs its tasks on one executor thread (``cluster.WorkerSetup`` builds the generator there),
    and a worker with several threads gets one context per thread rather than wrong pixels.
    """
    cache = _per_thread.__dict__.setdefault("generators", {})
    key = (spec, model_dir)
    if key not in cache:
        if len(cache) >= 2:  # a worker serving a new job: free the oldest context
            cache.pop(next(iter(cache))).renderer.release()
        cache[key] = FaceGenerator(spec, resolve_model(spec.model_reference(), model_dir))
    return cache[key]


def preview_sheet(spec, model, count: int = 16, start: int = 0):
    """Samples ``start`` .. ``start + count`` of a job, rendered in this process, as a contact sheet
    (``datagen preview``); nothing is written. A job with fine detail gets ``detail_sheet``'s; a video job
    a ``clip_preview.ClipPreview`` (an animation and two pictures: its ``save`` writes them)."""
    generator = FaceGenerator(spec, model)
    if spec.video.is_clip:
        return clip_preview(generator.generate(range(start, start + count)), spec.video.fps)
    if spec.sampling.detail.probability > 0:
        return detail_sheet(generator, range(start, start + count))
    return contact_sheet(generator.generate(range(start, start + count)))


def detail_sheet(generator: FaceGenerator, indices):
    """Per sample: its image, then under a raking light (which shows relief best) its face without
    detail, with its own, with another face's transferred onto it (the next sample's), and its fine normals."""
    from ..synth.detail import NO_DETAIL, sample_detail
    from ..synth.sampling import raking_light, sample_rng

    prior = dataclasses.replace(generator.spec.sampling.detail, probability=1.0)
    seed = generator.spec.seed
    own = lambda i: sample_detail(sample_rng(seed, i, "detail"), prior)  # noqa: E731 (every sample shown with detail)
    rows = []
    for i in indices:
        p = generator.sample_params(i)
        p = dataclasses.replace(p, detail=p.detail if p.detail.source else own(i))
        lit = dataclasses.replace(p, light_sh=raking_light(), capture=None)
        variants = [p] + [dataclasses.replace(lit, detail=d) for d in (NO_DETAIL, p.detail, own(i + 1))]
        rows.append(generator.render_params(variants))
    return detail_strips(rows)
