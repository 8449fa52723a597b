"""Fine detail (synth/detail.py, detail_bank.py, face.frag's fine_surface): the displaced surface's
ground truth is consistent with itself and with the image, and leaves the coarse ground truth alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from datagen.data.fields import LABELS, shard_fields
from datagen.errors import SpecError
from datagen.run.generator import FaceGenerator
from datagen.spec import parse_spec
from datagen.synth.detail import CREASES, NO_DETAIL, DetailParams, crease_activations, surface_detail
from datagen.synth.detail_bank import displacement_map
from datagen.synth.render import Renderer

SIZE = 320
DETAIL_LABELS = tuple(LABELS.index(n) for n in ("skin", "head_neck", "nose", "brow_right", "brow_left", "upper_lip",
                                                "lower_lip"))


def detail_spec(probability=1.0, extra=""):
    return parse_spec(f'''name = "detail"
seed = 3
[render]
width = {SIZE}
height = {SIZE}
[sampling.pose]
yaw_range_deg = [-25.0, 25.0]
pitch_range_deg = [-10.0, 10.0]
[sampling.camera]
face_fraction = [0.6, 0.65]
[sampling.detail]
probability = {probability}
resolution = 256
age = [0.7, 1.0]
{extra}
''', "<detail>")


@pytest.fixture(scope="module")
def renderer(ict_model, ctx):
    return Renderer(ict_model, SIZE, SIZE, ctx=ctx, detail_size=256)


@pytest.fixture(scope="module")
def generator(ict_model, renderer):
    return FaceGenerator(detail_spec(), ict_model, renderer)


@pytest.fixture(scope="module")
def detailed(generator):
    return generator.generate(range(3))


def _angle(a, b):
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


def back_projected_normals(depth, intrinsics):
    """Unit normals of the surface the depth map describes (central differences, interior pixels)."""
    h, w = depth.shape
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    p = np.stack([(u - cx) / fx * depth, -(v - cy) / fy * depth, -depth], -1)
    n = np.cross(p[1:-1, 2:] - p[1:-1, :-2], p[:-2, 1:-1] - p[2:, 1:-1])
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def test_a_job_without_detail_writes_no_fine_fields(ict_model):
    assert not {"depth_fine", "normal_fine", "params/detail"} & set(shard_fields(detail_spec(0.0), ict_model))
    assert {"depth_fine", "normal_fine", "params/detail"} <= set(shard_fields(detail_spec(), ict_model))


def test_zero_detail_is_the_coarse_surface_exactly(ict_model, renderer, generator):
    params = [generator.sample_params(i) for i in range(2)]
    none = dataclasses.replace(params[0], detail=NO_DETAIL)
    zero = dataclasses.replace(params[1], detail=dataclasses.replace(params[1].detail, strength=0.0))
    from datagen.synth.geometry import build_scenes

    out = renderer.render(build_scenes(ict_model, [none, zero], topology=renderer.topology))
    assert np.array_equal(out.depth_fine, out.depth) and np.array_equal(out.normal_fine, out.normal)


def test_detail_changes_only_the_skins_fine_normals(detailed):
    changed = (detailed["normal_fine"] != detailed["normal"]).any(-1)
    assert changed.mean() > 0.1  # the face shows detail
    assert np.isin(detailed["segmentation"][changed], DETAIL_LABELS).all()
    depth_changed = detailed["depth_fine"] != detailed["depth"]
    assert np.isin(detailed["segmentation"][depth_changed], DETAIL_LABELS).all()


def test_fine_depth_and_fine_normals_describe_one_surface(detailed):
    """Normals back-projected from depth_fine (with the intrinsics) agree with normal_fine.

    Measured at this size (320 px, face ~0.35 mm per pixel): the change the detail makes to the
    back-projected normals correlates with the change it makes to normal_fine at 0.95-0.97, and
    depth_fine's normals are as close to normal_fine as the coarse depth's are to the coarse
    normals (median ~2 degrees: interpolated vertex normals against faceted triangles, a
    difference the coarse ground truth already has): the detail adds at most 0.3 degrees to it.
    """
    for i in range(len(detailed["image"])):
        intrinsics = detailed["params/intrinsics"][i]
        interior = binary_erosion(np.isin(detailed["segmentation"][i], DETAIL_LABELS), iterations=3)[1:-1, 1:-1]
        fine, coarse = (detailed[k][i].astype(np.float32)[1:-1, 1:-1] for k in ("normal_fine", "normal"))
        from_fine = back_projected_normals(detailed["depth_fine"][i], intrinsics)
        from_coarse = back_projected_normals(detailed["depth"][i], intrinsics)
        face = interior & (fine[..., 2] > 0.5)
        assert np.median(_angle(fine, from_fine)[face]) < np.median(_angle(coarse, from_coarse)[face]) + 0.3
        shown = face & (_angle(fine, coarse) > 1.0)  # where the detail tilts the normal
        assert shown.sum() > 500
        a, b = (fine - coarse)[shown], (from_fine - from_coarse)[shown]
        assert (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()) > 0.9


def test_a_crease_is_there_when_its_blendshape_is_active_and_not_when_it_is_not(ict_model, renderer):
    bank = renderer.detail
    names = ict_model.expression_names
    young = DetailParams(source=1, age=0.0)  # no resting depth, no pores: only what the expression drives
    for k, crease in enumerate(CREASES):
        region = bank.creases[..., k] != 0
        assert region.sum() > 50, crease.name
        expression = np.zeros(len(names), np.float32)
        assert displacement_map(bank, surface_detail(young, names, expression)).max() == 0
        expression[[names.index(driver) for driver in crease.drivers]] = 1.0
        assert crease_activations(names, expression)[k] == 1.0
        active = displacement_map(bank, surface_detail(young, names, expression))
        assert np.abs(active[region]).max() > 0.02, crease.name  # mm
        driven = crease_activations(names, expression) > 0
        only_this = region & ((bank.creases[..., driven] != 0).sum(-1) == 1)
        expected = 0.5 * crease.driven_mm * bank.creases[..., k] * bank.mask  # at age 0: half the driven depth
        np.testing.assert_allclose(active[only_this], expected[only_this], atol=1e-6)
        undriven = (bank.creases[..., ~driven] != 0).any(-1) & ~(bank.creases[..., driven] != 0).any(-1)
        assert undriven.sum() > 1000 and not np.any(active[undriven]), crease.name


def test_anothers_detail_leaves_the_coarse_ground_truth_byte_identical(ict_model, renderer, generator):
    from datagen.synth.annotate import landmark_visibility
    from datagen.synth.geometry import build_scenes

    a, b = generator.sample_params(0), generator.sample_params(1)
    plain = dataclasses.replace(b, detail=NO_DETAIL)
    transferred = dataclasses.replace(b, detail=a.detail)
    scenes = [build_scenes(ict_model, [p], topology=renderer.topology) for p in (plain, transferred)]
    out = [renderer.render(s) for s in scenes]
    for name in ("depth", "normal", "segmentation"):
        assert getattr(out[0], name).tobytes() == getattr(out[1], name).tobytes(), name
    for name in ("vertices", "landmarks_2d", "landmarks_3d"):
        assert getattr(scenes[0], name).tobytes() == getattr(scenes[1], name).tobytes(), name
    assert landmark_visibility(scenes[0], out[0]).tobytes() == landmark_visibility(scenes[1], out[1]).tobytes()
    assert not np.array_equal(out[0].normal_fine, out[1].normal_fine)
    assert not np.array_equal(out[0].colour, out[1].colour)  # the image shows it


def test_params_detail_rebuilds_the_samples_detail(ict_model, generator, detailed):
    for i in range(len(detailed["image"])):
        params = DetailParams.from_array(detailed["params/detail"][i])
        assert params == generator.sample_params(i).detail
    assert detailed["params/detail"].shape[1] == len(DetailParams().as_array())


@pytest.mark.parametrize("setting,message", [("resolution = 10", "resolution"), ("age = [0.5, 2.0]", "age"),
                                             ("probability = 1.5", "probability")])
def test_bad_detail_settings_are_one_clear_error(setting, message):
    with pytest.raises(SpecError, match=f"sampling.detail.{message}"):
        parse_spec(f'name = "x"\n[sampling.detail]\n{setting}\n', "<x>")


# --- a photo's own detail (photo/fine_detail.py)


@pytest.fixture(scope="module")
def detailed_photo(ict_model, ctx):
    """A render with strong known detail under a directional light, as a photo: its true fit and detail."""
    from datagen.photo.fitting import LandmarkFit
    from datagen.synth.geometry import build_scenes

    spec = parse_spec('''name = "photo"
seed = 5
[render]
width = 512
height = 512
[sampling.pose]
yaw_range_deg = [-20.0, 20.0]
pitch_range_deg = [-5.0, 5.0]
[sampling.camera]
face_fraction = [0.55, 0.6]
[sampling.lighting]
ambient = [0.3, 0.4]
directional = [0.8, 1.0]
elevation_range_deg = [10.0, 40.0]
[sampling.detail]
probability = 1.0
resolution = 512
age = [0.9, 1.0]
strength = [1.5, 1.5]
''', "<photo>")
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, 512, 512, ctx=ctx, detail_size=512))
    p = generator.sample_params(0)
    out = generator.generate([0])
    fit = LandmarkFit(identity=p.identity, expression=p.expression, rotation=p.rotation, translation=p.translation,
                      intrinsics=p.intrinsics, landmarks=out["landmarks_2d"][0], fitted_landmarks=out["landmarks_2d"][0],
                      error_px=0.0, error_iod=0.0)
    truth = displacement_map(generator.renderer.detail, build_scenes(ict_model, [p]).details[0])
    return out["image"][0], fit, truth


@pytest.fixture(scope="module")
def photo_fitter(ict_model, ctx):
    from datagen.photo.fitter import PhotoFitter

    return PhotoFitter(ict_model, ctx=ctx)


@pytest.fixture(scope="module")
def fitted_photo(photo_fitter, detailed_photo):
    image, fit, _ = detailed_photo
    return photo_fitter.recover("photo", image, fit, "photo", "given")  # lighting, albedo, detail of the true fit


def test_a_photos_detail_is_extracted_and_rerendering_with_it_matches_the_photo_better(photo_fitter, detailed_photo,
                                                                                       fitted_photo):
    from datagen.photo.texture import SKIN_LABELS, srgb_to_linear

    image, fit, truth = detailed_photo
    fitted = fitted_photo
    d, seen = fitted.detail.displacement, fitted.detail.confidence > 0.1
    assert seen.mean() > 0.1
    # measured: 0.38 (with the true geometry; one derivative along the light seen, sub-texel pores lost)
    assert np.corrcoef(d[seen], truth[seen])[0, 1] > 0.25
    errors = []
    for detail in (False, True):
        out = photo_fitter.rerender(fitted, detail=detail)
        face = np.isin(out.segmentation[0], SKIN_LABELS) & photo_fitter.seen_mask(fitted)
        errors.append(((srgb_to_linear(out.colour[0][..., :3]) - srgb_to_linear(image))[face] ** 2).mean())
    psnr = [10 * np.log10(1 / e) for e in errors]
    assert psnr[1] > psnr[0] + 2.0, psnr  # measured: +7 dB


def test_the_albedo_is_reestimated_without_the_wrinkles_shading(ict_model, ctx, detailed_photo, fitted_photo):
    from datagen.photo.fitter import PhotoFitter
    from scipy.ndimage import gaussian_filter

    image, fit, truth = detailed_photo
    with_detail = fitted_photo
    baked = PhotoFitter(ict_model, ctx=ctx, detail=False).recover("photo", image, fit, "photo", "given")
    assert baked.detail is None
    seen = with_detail.detail.confidence > 0.1
    def fine(photo):  # the albedo's high-passed log luminance where the photo shows the face
        level = np.log(photo.albedo.albedo.mean(-1) + 1e-3)
        return (level - gaussian_filter(level, 3))[seen]

    assert fine(with_detail).std() < fine(baked).std()


def test_library_entries_keep_their_detail_and_old_or_broken_ones_say_so(tmp_path, fitted_photo, ict_model):
    from datagen.errors import DatagenError
    from datagen.photo.library import TextureLibrary

    fitted = fitted_photo
    library = TextureLibrary(tmp_path / "lib")
    library.add(fitted, ict_model)
    loaded = library.load("photo").detail
    np.testing.assert_allclose(loaded.displacement, fitted.detail.displacement, atol=2e-3)  # float16 on disk
    (tmp_path / "lib" / "photo" / "detail.npz").write_bytes(b"not a detail map")
    with pytest.raises(DatagenError, match=r"lib/photo/detail.npz: unreadable detail map"):
        library.load("photo")
    np.savez(tmp_path / "lib" / "photo" / "detail.npz", displacement=np.zeros((8, 16), np.float16),
             confidence=np.zeros((8, 16), np.uint8), tiles=2)
    with pytest.raises(DatagenError, match="detail map of 16x8 texels, but the entry's albedo is"):
        library.load("photo")
    (tmp_path / "lib" / "photo" / "detail.npz").unlink()  # an entry fitted before detail maps
    assert library.load("photo").detail is None


def photoreal_spec(library, extra: str = ""):
    """A photo-realistic job on ``library`` at the tests' size, with ``extra`` TOML lines."""
    return parse_spec(f'''name = "photoreal"
[render]
width = {SIZE}
height = {SIZE}
[photoreal]
library = "{library}"
{extra}
''', "<photoreal>")


def test_photo_realistic_faces_get_their_photos_detail_and_old_libraries_are_named(tmp_path, fitted_photo, ict_model,
                                                                                  renderer):
    from datagen.photo.library import TextureLibrary
    from datagen.photo.library_sources import libraries_without_detail

    TextureLibrary(tmp_path / "lib").add(fitted_photo, ict_model)
    spec = photoreal_spec(tmp_path / "lib", "[sampling.detail]\nprobability = 1.0\nresolution = 256")
    generator = FaceGenerator(spec, ict_model, renderer)
    arrays = generator.generate(range(2))
    detail = arrays["params/detail"]
    assert (detail[:, 0] == 2).all() and (detail[:, 1] == 0).all()  # source: photo, the re-rendered one's own
    assert (arrays["normal_fine"] != arrays["normal"]).any()
    assert libraries_without_detail(spec) == []
    (tmp_path / "lib" / fitted_photo.name / "detail.npz").unlink()  # as if fitted before detail maps
    assert "1 of 1 entries were fitted before detail maps" in libraries_without_detail(spec)[0]
    generator = FaceGenerator(spec, ict_model, renderer)
    assert generator.generate([0])["image"].shape == (1, SIZE, SIZE, 3)  # procedural detail only


def test_a_photo_realistic_face_shades_its_relief_under_the_new_light_and_nothing_else(tmp_path, fitted_photo,
                                                                                     ict_model, renderer):
    """The photo's own detail and the new expression's creases shade the re-rendered photo (the
    composite's ratio at the fine normals): with detail the face differs from the same sample
    without, under a new light, only where the relief is; with the photo's light, pose,
    expression and only its own detail, the ratio is 1 and the picture is the one a job without
    detail makes (the photo's wrinkles as photographed); without detail, the photo's relief is
    divided out where it shows, as the sample's normal_fine (= normal) says."""
    from datagen.photo.library import TextureLibrary
    from datagen.synth.detail import OWN_PHOTO_DETAIL
    from datagen.synth.sampling import raking_light

    TextureLibrary(tmp_path / "lib").add(fitted_photo, ict_model)
    spec = photoreal_spec(tmp_path / "lib", "[sampling.detail]\nprobability = 1.0\nresolution = 256\nage = [0.9, 1.0]")
    generator = FaceGenerator(spec, ict_model, renderer)
    p = dataclasses.replace(generator.sample_params(0), light_sh=raking_light())
    arrays = generator.render_params([dataclasses.replace(p, detail=NO_DETAIL), p])
    change = np.abs(arrays["image"][1].astype(float) - arrays["image"][0]).max(-1)
    relief = _angle(arrays["normal_fine"][1].astype(np.float32), arrays["normal"][1].astype(np.float32)) > 1.0
    assert (change > 3).sum() > 300  # the wrinkles show
    assert (change[~binary_erosion(~relief, iterations=2)] > 3).mean() < 0.02  # and nothing away from them
    photo = generator.photos.load(0)
    fitted = generator.composer.layers(0)
    unchanged = dataclasses.replace(p, rotation=np.asarray(fitted.rotation, np.float32),
                                    translation=np.asarray(fitted.translation, np.float32),
                                    expression=photo.fit.expression, light_sh=photo.light_sh.astype(np.float32))
    arrays = generator.render_params([dataclasses.replace(unchanged, detail=OWN_PHOTO_DETAIL),
                                      dataclasses.replace(unchanged, detail=NO_DETAIL)])
    plain = FaceGenerator(photoreal_spec(tmp_path / "lib"), ict_model, Renderer(ict_model, SIZE, SIZE, ctx=renderer.ctx))
    as_taken = plain.render_params([dataclasses.replace(unchanged, detail=NO_DETAIL)])["image"][0].astype(int)
    assert np.abs(arrays["image"][0] - as_taken)[fitted.face].max() <= 2
    kept = np.abs(arrays["image"][0] - as_taken)[fitted.face].mean()
    taken_out = np.abs(arrays["image"][1] - as_taken)[fitted.face].mean()
    print(f"mean change over the face: own detail {kept:.3f} levels, its relief divided out {taken_out:.3f}")
    # measured 0.000 and 0.022: this photo's fitted light is mostly ambient, its relief shades it by +-5% at most
    assert kept <= 0.002 and taken_out >= 0.01
