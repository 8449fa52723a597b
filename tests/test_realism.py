"""The options that make renders look like photos (issue 15): each keeps the ground truth exact,
is deterministic, and leaves today's samples unchanged when off."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import tiny_spec
from datagen.camera import SH_NORM
from datagen.data.fields import APPEARANCE_NAMES
from datagen.data.manifest import accepted_fingerprints, spec_fingerprint
from datagen.data.skin_tone import ITA_CATEGORIES, ita_category
from datagen.run.generator import FaceGenerator
from datagen.spec import parse_spec
from datagen.synth import skin
from datagen.synth.background import BackgroundImage, make_background, window_outside
from datagen.synth.capture import apply_capture
from datagen.synth.face_parts import LABEL
from datagen.synth.geometry import build_scenes
from datagen.synth.render import Renderer
from datagen.synth.sampling import CaptureParams, sample_appearance, sample_face, sample_lighting


def test_balanced_skin_tones_fill_every_ita_category_equally():
    spec = parse_spec('name = "x"\n[sampling.appearance]\nskin_tones = "balanced"')
    names = APPEARANCE_NAMES
    draws = np.stack([sample_appearance(np.random.default_rng([3, i]), spec.sampling) for i in range(1200)])
    ita = skin.rendered_ita(draws[:, names.index("melanin")], draws[:, names.index("haemoglobin")])
    shares = {name: np.mean([ita_category(a) == name for a in ita]) for name, _ in ITA_CATEGORIES}
    assert all(0.12 < share < 0.21 for share in shares.values()), shares
    # the uniform prior, today's, piles up in the dark categories (the complaint)
    before = parse_spec('name = "x"\n[sampling.appearance]\nskin_tones = "uniform"').sampling
    uniform = np.stack([sample_appearance(np.random.default_rng([3, i]), before) for i in range(1200)])
    dark = skin.rendered_ita(uniform[:, 0], uniform[:, 1]) < -30
    assert dark.mean() > 0.4
    # every other appearance parameter is drawn as before
    np.testing.assert_array_equal(draws[:, 1:], uniform[:, 1:])


def test_melanin_for_ita_inverts_the_rendered_tone():
    for target in (65.0, 45.0, 30.0, 15.0, -10.0, -45.0):
        melanin = skin.melanin_for_ita(target, 0.5)
        assert abs(skin.rendered_ita(melanin, 0.5) - target) < 0.5


def test_the_shader_paints_the_base_albedo_it_is_given(ict_model, ctx):
    """Under a uniform environment the skin's colour is the base albedo times the irradiance: the
    shader and synth.skin agree (the balanced prior's inverse is only right if they do)."""
    spec = parse_spec('name = "x"\nseed = 2\n[sampling.pose]\nyaw_range_deg = [0.0, 0.0]\npitch_range_deg = [0.0, 0.0]')
    values = dict(zip(APPEARANCE_NAMES, sample_face(spec, ict_model, 0).appearance))
    values.update(melanin=0.3, haemoglobin=0.5, cheek_redness=0.0, blotch_strength=0.0, pore_strength=0.0,
                  specular=0.0)
    light = np.zeros((9, 3), np.float32)
    light[0] = 0.8 / SH_NORM[0]  # irradiance / pi = 0.8 for every normal
    params = dataclasses.replace(sample_face(spec, ict_model, 0), light_sh=light,
                                 appearance=np.array([values[n] for n in APPEARANCE_NAMES], np.float32))
    rendered = Renderer(ict_model, 128, 128, supersample=1, ctx=ctx).render(build_scenes(ict_model, [params]))
    pixels = rendered.colour[0][rendered.segmentation[0] == LABEL["skin"], :3]
    linear = 0.8 * skin.base_albedo(0.3, 0.5)
    expected = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    np.testing.assert_allclose(np.median(pixels, 0), expected, atol=4)


# --- capture effects


def _capture(**changes) -> CaptureParams:
    values = dict(background_sigma=0.0, lens_sigma=0.0, motion_length=0.0, motion_angle=0.0,
                  gains=np.ones(3, np.float32), vignetting=0.0, read_noise=0.0, shot_noise_gain=0.0, jpeg_quality=0)
    return CaptureParams(**{**values, **changes})


def test_capture_without_effects_is_the_identity_and_blurs_keep_points_where_they_are():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(apply_capture(image, _capture(), 0, 0), image)
    np.testing.assert_array_equal(apply_capture(image, None, 0, 0), image)
    dot = np.zeros((65, 65, 3), np.uint8)
    dot[30:33, 40:43] = 255
    for capture in (_capture(lens_sigma=1.5), _capture(motion_length=6.0, motion_angle=0.7),
                    _capture(motion_length=5.0, motion_angle=2.5)):
        blurred = apply_capture(dot, capture, 0, 0)[..., 0].astype(float)
        assert (blurred > 0).sum() > 9  # it spread ...
        y, x = np.mgrid[0:65, 0:65]
        centre = np.array([(blurred * x).sum(), (blurred * y).sum()]) / blurred.sum()
        np.testing.assert_allclose(centre, [41, 31], atol=0.35)  # ... around where it was


def test_sensor_noise_grows_with_the_signal_and_is_the_samples_own():
    flat = np.concatenate([np.full((64, 32, 3), 20, np.uint8), np.full((64, 32, 3), 200, np.uint8)], 1)
    capture = _capture(read_noise=1.0, shot_noise_gain=2.0)
    noisy = apply_capture(flat, capture, 5, 9).astype(float)
    assert noisy[:, 32:].std() > 1.8 * noisy[:, :32].std() > 0
    np.testing.assert_array_equal(apply_capture(flat, capture, 5, 9), noisy.astype(np.uint8))
    assert not np.array_equal(apply_capture(flat, capture, 5, 10), noisy.astype(np.uint8))


def test_capture_changes_the_image_and_nothing_else(tiny_model, tiny_model_dir, ctx):
    renderer = Renderer(tiny_model, 64, 64, ctx=ctx)
    plain = FaceGenerator(tiny_spec(tiny_model_dir), tiny_model, renderer).generate(range(6))
    spec = tiny_spec(tiny_model_dir, top="[sampling.capture]\nprobability = 1.0\njpeg = 1.0\nnoise = 1.0")
    captured = FaceGenerator(spec, tiny_model, renderer).generate(range(6))
    for name in plain:
        if name != "image":
            np.testing.assert_array_equal(plain[name], captured[name], err_msg=name)
    assert all(not np.array_equal(a, b) for a, b in zip(plain["image"], captured["image"]))
    again = FaceGenerator(spec, tiny_model, renderer).generate([3])
    np.testing.assert_array_equal(again["image"][0], captured["image"][3])


# --- real environments and backgrounds from texture libraries


def _library(path: Path, photos: dict) -> Path:
    """A texture library's index and entries as `datagen fit` writes them, the parts these options
    read (photo.png, fit.json's landmarks and light_sh): {name: (image, landmarks, light_sh)}."""
    entries = []
    for name, (image, landmarks, light) in photos.items():
        (path / name).mkdir(parents=True)
        Image.fromarray(image).save(path / name / "photo.png")
        (path / name / "fit.json").write_text(json.dumps({"landmarks": landmarks.tolist(), "light_sh": light.tolist()}))
        entries.append({"name": name})
    (path / "index.json").write_text(json.dumps({"format": "datagen-textures", "entries": entries}))
    return path


def _portrait(size=256):
    """A photo whose head (inside the landmarks' box, grown) is red and whose surroundings are blue."""
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 2] = 255
    image[70:200, 95:162] = (255, 0, 0)
    t = np.linspace(0, 1, 68)
    landmarks = np.stack([100 + 56 * t, 120 + 60 * np.abs(np.sin(7 * t))], 1)
    return image, landmarks


def test_library_photos_are_backgrounds_that_never_show_the_head(tmp_path):
    from datagen.photo.library_sources import photo_backgrounds

    image, landmarks = _portrait()
    light = np.zeros((9, 3))
    library = _library(tmp_path / "lib", {"a": (image, landmarks, light),
                                          "tight": (image[50:210, 80:176], landmarks - [80, 50], light)})
    backgrounds = photo_backgrounds([library])
    assert [b.path.parent.name for b in backgrounds] == ["a"]  # no room beside the head in "tight"
    for index in range(40):
        picture = make_background(1, index, np.array([1, 0]), backgrounds, 48, 48)
        assert picture[..., 0].max() == 0 and picture[..., 2].min() == 255
    rng = np.random.default_rng(0)
    for _ in range(200):
        box = sorted(rng.uniform(0, 300, 2)), sorted(rng.uniform(0, 200, 2))
        keep_out = (box[0][0], box[1][0], box[0][1], box[1][1])
        try:
            x0, y0, x1, y1 = window_outside(rng, (300, 200), keep_out)
        except ValueError:
            continue
        assert x1 - x0 == y1 - y0 >= 48 and 0 <= x0 and x1 <= 300 and 0 <= y0 and y1 <= 200
        assert x1 <= keep_out[0] + 1 or x0 >= keep_out[2] - 1 or y1 <= keep_out[1] + 1 or y0 >= keep_out[3] - 1


def test_a_job_with_library_backgrounds_composites_them(tiny_model, tiny_model_dir, ctx, tmp_path):
    image, landmarks = _portrait()
    library = _library(tmp_path / "lib", {"a": (image, landmarks, np.zeros((9, 3)))})
    spec = tiny_spec(tiny_model_dir, top=f'[sampling.background]\nkind = "images"\ntexture_libraries = ["{library}"]')
    arrays = FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx)).generate(range(4))
    background = ndimage.binary_erosion(arrays["segmentation"] == 0, np.ones((1, 3, 3)))  # clear of the face's edge
    assert (arrays["params/background"] == [1, 0]).all()
    assert (arrays["image"][background][:, 2] > 200).all() and (arrays["image"][background][:, 0] < 40).all()


def test_library_lights_are_real_environments_mirrored_and_at_the_priors_brightness(tmp_path):
    from datagen.photo.library_sources import library_lights
    from datagen.synth.sampling import MIRRORED_SH, _facing_brightness

    light = np.zeros((9, 3), np.float32)
    light[0], light[3], light[2] = 3.0, 2.0, 1.0  # bright, from the camera's right and front
    image, landmarks = _portrait()
    library = _library(tmp_path / "lib", {"a": (image, landmarks, light)})
    lights = library_lights([library])
    np.testing.assert_array_equal(lights[0], light)
    spec = parse_spec('name = "x"\n[sampling.lighting]\nlibrary_probability = 1.0')
    drawn = [sample_lighting(np.random.default_rng([0, i]), spec.sampling, lights) for i in range(200)]
    parametric = [sample_lighting(np.random.default_rng([1, i]), spec.sampling) for i in range(200)]
    for sh in drawn:  # the environment's shape, either way round
        direction = sh[:, 0] / sh[0, 0]
        assert np.allclose(direction, light[:, 0] / 3) or np.allclose(direction, light[:, 0] * MIRRORED_SH / 3)
    assert 0.3 < np.mean([sh[3, 0] > 0 for sh in drawn]) < 0.7
    ours, theirs = [np.median([_facing_brightness(sh) for sh in x]) for x in (drawn, parametric)]
    assert abs(ours / theirs - 1) < 0.1
    # without library lights, the draws are today's
    today = parse_spec('name = "x"\n[sampling.appearance]\nskin_tones = "uniform"').sampling
    np.testing.assert_array_equal(sample_lighting(np.random.default_rng(5), today),
                                  sample_lighting(np.random.default_rng(5), spec.sampling, []))


def test_options_at_their_neutral_values_keep_a_jobs_fingerprint():
    """A dataset begun before these options existed resumes: the new keys at their neutral values are
    left out of the fingerprint, and any other value makes it another job."""
    spec = parse_spec('name = "x"\n[sampling.appearance]\nskin_tones = "uniform"')  # the options' neutral values
    old = dataclasses.asdict(spec)
    for key in ("cluster", "source_text", "source_path", "base_dir"):
        old.pop(key)
    for table in ("capture", "hair", "clothing", "occluders"):
        old["sampling"].pop(table)
    old.pop("video")
    old["render"].pop("geometry")
    del old["sampling"]["background"]["texture_libraries"], old["sampling"]["appearance"]["skin_tones"]
    del old["sampling"]["lighting"]["texture_libraries"], old["sampling"]["lighting"]["library_probability"]
    import hashlib
    legacy = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()  # compression in it, as then
    assert legacy in accepted_fingerprints(spec)
    lz4 = dataclasses.replace(spec, output=dataclasses.replace(spec.output, compression="lz4"))
    assert legacy in accepted_fingerprints(lz4)  # a new default compression still resumes the old output
    assert spec_fingerprint(lz4) == spec_fingerprint(spec)  # how samples are stored is not the job's identity
    for key in ("compression", "compression_level"):
        old["output"].pop(key)
    assert spec_fingerprint(spec) == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    assert spec_fingerprint(parse_spec('name = "x"')) != spec_fingerprint(spec)  # balanced tones by default: new samples
    for table in ('[sampling.capture]\nprobability = 0.5', '[sampling.appearance]\nskin_tones = "balanced"',
                  '[sampling.lighting]\ntexture_libraries = ["lib"]', '[sampling.hair]\nprobability = 0.5',
                  '[sampling.clothing]\nprobability = 0.5', '[sampling.occluders]\nhand_probability = 0.5',
                  '[video]\nframes = 4'):
        assert spec_fingerprint(parse_spec(f'name = "x"\n{table}')) != spec_fingerprint(spec), table


@pytest.mark.parametrize("table", ['[sampling.capture]\nprobability = 2', '[sampling.capture]\njpeg_quality = [0, 90]',
                                   '[sampling.appearance]\nskin_tones = "fair"',
                                   '[sampling.lighting]\nlibrary_probability = -1'])
def test_bad_realism_options_are_one_clear_error(table):
    from datagen.errors import SpecError

    with pytest.raises(SpecError, match="sampling"):
        parse_spec(f'name = "x"\n{table}')


# --- props: hair, clothing, glasses, hands


PROPS_SPEC = '''name = "props"
seed = 5
[render]
width = 128
height = 128
[sampling.hair]
probability = 1.0
fringe_probability = 0.6
eyelash_probability = 1.0
brow_relief_probability = 1.0
[sampling.clothing]
probability = 1.0
[sampling.occluders]
glasses_probability = 0.5
hand_probability = 0.5
'''


@pytest.fixture(scope="module")
def props_batch(ict_model, ctx):
    spec = parse_spec(PROPS_SPEC)
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, 128, 128, ctx=ctx))
    with_props = generator.generate(range(12))
    bare = [dataclasses.replace(generator.sample_params(i), hair=None, clothing=None, glasses=None, hand=None,
                                face_hair=None)
            for i in range(12)]
    without = generator.renderer.render(build_scenes(ict_model, bare))
    return with_props, without


def test_props_keep_depth_segmentation_and_normals_exact(props_batch):
    arrays, _ = props_batch
    np.testing.assert_array_equal(arrays["depth"] > 0, arrays["segmentation"] > 0)
    mask = arrays["segmentation"] > 0
    np.testing.assert_allclose(np.linalg.norm(arrays["normal"][mask].astype(np.float32), axis=-1), 1, atol=3e-3)
    seen = {name for name in ("hair", "clothing", "glasses", "hand")
            if (arrays["segmentation"] == LABEL[name]).any()}
    assert seen == {"hair", "clothing", "glasses", "hand"}, seen


def test_props_lie_in_front_of_the_face_they_cover(props_batch):
    arrays, bare = props_batch
    for name in ("hair", "glasses", "hand"):
        on = (arrays["segmentation"] == LABEL[name]) & (bare.segmentation > 0)
        assert on.any(), name
        assert (arrays["depth"][on] <= bare.depth[on] + 1e-3).all(), name  # never behind the skin it covers
    hand = arrays["segmentation"] == LABEL["hand"]
    assert (arrays["depth"][hand & (bare.segmentation > 0)] < bare.depth[hand & (bare.segmentation > 0)] - 1).all()
    # away from the props (and the lashes and brows), the face is drawn exactly as without them
    away = ~np.isin(arrays["segmentation"], [LABEL[n] for n in ("hair", "clothing", "glasses", "hand", "brow_left",
                                                                  "brow_right", "eye_left", "eye_right")])
    away &= bare.segmentation > 0
    np.testing.assert_array_equal(arrays["depth"][away], bare.depth[away])


def test_landmarks_a_prop_covers_are_not_visible(props_batch):
    arrays, _ = props_batch
    props = [LABEL[n] for n in ("hair", "clothing", "glasses", "hand")]
    hidden_by_prop = 0
    for k in range(len(arrays["image"])):
        for (x, y), point, visible in zip(arrays["landmarks_2d"][k], arrays["landmarks_3d"][k], arrays["landmark_visible"][k]):
            col, row = int(x), int(y)
            if 0 <= col < 128 and 0 <= row < 128 and arrays["segmentation"][k, row, col] in props:
                in_front = arrays["depth"][k, row, col] < -point[2]
                assert not (visible and in_front)  # a prop in front hides it; one behind (hair behind the jaw) does not
                hidden_by_prop += in_front
    assert hidden_by_prop > 0


def test_props_are_deterministic_per_sample(ict_model, ctx, props_batch):
    spec = parse_spec(PROPS_SPEC)
    again = FaceGenerator(spec, ict_model, Renderer(ict_model, 128, 128, ctx=ctx)).generate(range(12))
    for name in ("image", "segmentation", "depth"):
        np.testing.assert_array_equal(again[name], props_batch[0][name])


def test_hairstyles_follow_their_prior():
    from datagen.synth.props.hair import HAIR_COLOURS, sample_hair

    prior = parse_spec('name = "x"\n[sampling.hair]\nprobability = 0.7\nfringe_probability = 1.0\n'
                       'colour_weights = [0, 0, 0, 0, 1, 0, 0, 0]\nlength_weights = [0, 0, 1]').sampling.hair
    styles = [sample_hair(np.random.default_rng([1, i]), prior) for i in range(400)]
    drawn = [s for s in styles if s is not None]
    assert 0.63 < len(drawn) / 400 < 0.77  # the bald share
    assert all(s.hairline[0] <= 0.3 for s in drawn)  # every front hairline lowered by the fringe
    assert all(s.hairline[-1] < -2.0 for s in drawn)  # long: down to the shoulders
    blond = np.asarray(HAIR_COLOURS["blond"])
    assert all(np.allclose(s.colour / s.colour.sum(), blond / blond.sum(), atol=1e-5) for s in drawn)


def test_hair_and_clothing_on_a_face_only_model_are_one_clear_error(tiny_model, tiny_model_dir, ctx):
    from datagen.errors import DatagenError

    spec = tiny_spec(tiny_model_dir, top="[sampling.hair]\nprobability = 0.5")
    with pytest.raises(DatagenError, match="head and neck"):
        FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx))
    # glasses and hands need only a face
    spec = tiny_spec(tiny_model_dir, top="[sampling.occluders]\nglasses_probability = 1.0\nhand_probability = 1.0")
    arrays = FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx)).generate(range(2))
    assert (arrays["segmentation"] == LABEL["hand"]).any()


def test_prop_shapes_face_outwards():
    from datagen.synth.props.shapes import capsule, ellipsoid, tube

    def outward(positions, triangles, inside):
        a, b, c = (positions[triangles[:, k]] for k in range(3))
        return (np.cross(b - a, c - a) * ((a + b + c) / 3 - inside((a + b + c) / 3))).sum(1) > 0

    for shape in (ellipsoid([1, 2, 3], np.diag([1.0, 2.0, 3.0])), ellipsoid([0, 0, 0], np.diag([1.0, -2.0, 3.0])),
                  capsule([0, 0, 0], [0, 3, 10], 2.0)):
        centre = shape[0].mean(0)
        assert outward(*shape, lambda p: centre).all()
    path = np.stack([np.linspace(0, 10, 6), np.zeros(6), np.zeros(6)], 1)
    assert outward(*tube(path, 1.0), lambda p: p * [1, 0, 0]).all()


def test_lash_cards_run_from_the_lid_to_their_tips(ict_model):
    from datagen.synth.props.face_hair import lash_cards

    cards = lash_cards(ict_model)
    points = ict_model.mean[cards.ids]
    for side in ("left", "right"):
        on = cards.label == LABEL[f"eye_{side}"]
        eye = ict_model.mean[ict_model.region_vertices(f"sclera_{side}")].mean(0)
        distance = np.linalg.norm(points[on] - eye, axis=1)
        assert distance[cards.tip[on] < 0.1].mean() < distance[cards.tip[on] > 0.9].mean() - 3
    assert cards.tip.min() == 0 and cards.tip.max() == 1


def test_eyelashes_and_brows_are_drawn_on_the_eyes_and_brows_only(props_batch):
    arrays, bare = props_batch
    changed = (arrays["segmentation"] != bare.segmentation) & (bare.segmentation > 0)
    props = np.isin(arrays["segmentation"], [LABEL[n] for n in ("hair", "clothing", "glasses", "hand")])
    # what is not a prop's became an eye's or a brow's: lashes over the lids, brows standing off the skin
    relabelled = np.unique(arrays["segmentation"][changed & ~props])
    assert set(relabelled) <= {LABEL[n] for n in ("eye_left", "eye_right", "brow_left", "brow_right")}, relabelled
    assert {LABEL["eye_left"], LABEL["eye_right"]} & set(relabelled)


def test_every_library_a_job_reads_is_fingerprinted_and_checked(tmp_path, tiny_model, tiny_model_dir, ctx):
    from datagen.errors import DatagenError
    from datagen.run.plan import texture_fingerprints

    image, landmarks = _portrait()
    library = _library(tmp_path / "lib", {"a": (image, landmarks, np.zeros((9, 3)))})
    spec = tiny_spec(tiny_model_dir, top=f'[sampling.lighting]\ntexture_libraries = ["{library}"]\n'
                                          f'[sampling.background]\nkind = "mixed"\ntexture_libraries = ["{library}"]')
    before = texture_fingerprints(spec)
    assert list(before) == [str(library)]  # read twice, fingerprinted once
    index = json.loads((library / "index.json").read_text())
    (library / "index.json").write_text(json.dumps({**index, "refitted": True}))
    assert texture_fingerprints(spec) != before  # refitting it makes the output another job's
    (library / "index.json").write_text(json.dumps({**index, "entries": []}))
    with pytest.raises(DatagenError, match="empty"):
        FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx))
    tight = _library(tmp_path / "tight", {"t": (image[50:210, 80:176], landmarks - [80, 50], np.zeros((9, 3)))})
    spec = tiny_spec(tiny_model_dir, top=f'[sampling.background]\nkind = "images"\ntexture_libraries = ["{tight}"]')
    with pytest.raises(DatagenError, match="no background images"):
        FaceGenerator(spec, tiny_model, Renderer(tiny_model, 64, 64, ctx=ctx))
