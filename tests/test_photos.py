"""Inverse rendering of real photos: landmarks, 3DMM fitting, albedo/lighting recovery, the texture library."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from datagen.cli import cli
from datagen.photo.fitting import fit_landmarks
from datagen.photo.landmarks import Detector, LandmarkError, interocular_distance, matching_face, read_pts
from datagen.photo.fitter import PhotoError, PhotoFitter, read_photo
from datagen.photo.library import TextureLibrary
from datagen.photo.texture import SEEN
from conftest import SHARED

FACES = SHARED / "faces"


def test_pts_files_are_read_in_datagen_pixel_convention(tmp_path):
    lm = read_pts(FACES / "takeo.pts")
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    first = [float(v) for v in (FACES / "takeo.pts").read_text().split("{")[1].split()[:2]]
    np.testing.assert_allclose(lm[0], np.array(first) - 0.5, atol=1e-5)  # 1-based centres -> ours
    bad = tmp_path / "bad.pts"
    bad.write_text("version: 1\nn_points: 5\n{\n1 2\n3 4\n5 6\n7 8\n9 10\n}\n")
    with pytest.raises(LandmarkError, match="5 points; datagen needs the 68 iBUG points"):
        read_pts(bad)
    bad.write_text("hello")
    with pytest.raises(LandmarkError, match="not an iBUG .pts file"):
        read_pts(bad)


@pytest.mark.parametrize("model_name", ["ict-facekit", "sfm"])
@pytest.mark.parametrize("photo", ["image_0010.png", "takeo.ppm"])
def test_fit_reprojects_the_68_landmarks_within_5_percent_of_the_interocular_distance(real_model_dir, model_name, photo):
    from datagen.models.registry import resolve_model

    model = resolve_model(model_name, real_model_dir, download=False)
    image = read_photo(FACES / photo)
    lm = read_pts(FACES / photo.replace(".png", ".pts").replace(".ppm", ".pts"))
    fit = fit_landmarks(model, lm, image.shape[1], image.shape[0])
    print(f"{model_name} {photo}: {fit.error_px:.2f} px, {100 * fit.error_iod:.2f}% IOD")
    assert fit.error_iod < 0.05
    assert np.isclose(fit.error_iod, np.linalg.norm(fit.fitted_landmarks - lm, axis=1).mean() / interocular_distance(lm))
    if model.expression_kind == "blendshape":
        assert fit.expression.min() >= 0 and fit.expression.max() <= 1
    assert np.abs(fit.identity).max() <= 4 and fit.translation[2] < 0


@pytest.fixture(scope="module")
def fitter(ict_model, ctx):
    return PhotoFitter(ict_model, ctx=ctx)


def test_rerendering_a_fitted_photo_reproduces_its_visible_face(fitter, ict_model, tmp_path):
    from datagen.synth.face_parts import LABEL

    fitted = fitter.fit(FACES / "image_0010.png")
    assert fitted.landmark_source.endswith("image_0010.pts")
    seen = fitted.albedo.confidence >= SEEN
    assert 0.1 < seen.mean() < 0.6  # the visible part of the face and head, not the back
    assert np.isfinite(fitted.albedo.albedo).all() and fitted.albedo.albedo.min() >= 0
    library = TextureLibrary(tmp_path / "lib")
    library.add(fitted, ict_model)
    loaded = library.load("image_0010")  # the library's albedo (float16) is what generation uses
    rendered = fitter.rerender(loaded)
    face = np.isin(rendered.segmentation[0], [LABEL[n] for n in ("skin", "nose", "brow_right", "brow_left",
                                                                 "upper_lip", "lower_lip")])
    region = fitter.seen_mask(loaded) & face  # the face, where the photo shows it
    assert region.sum() > 45_000
    difference = rendered.colour[0][..., :3].astype(float) - loaded.crop.astype(float)
    psnr = 10 * np.log10(255 ** 2 / (difference[region] ** 2).mean())
    print(f"re-rendering image_0010: PSNR {psnr:.1f} dB over {region.sum()} face pixels")
    assert psnr >= 25
    # the same parameters with the procedural skin instead of the recovered albedo: far from the photo
    procedural = fitter.renderer.render(_scene(fitter, loaded)).colour[0][..., :3].astype(float)
    assert 10 * np.log10(255 ** 2 / ((procedural - loaded.crop)[region] ** 2).mean()) < psnr - 8


def test_the_sfm_recovers_a_photo_too(real_model_dir, ctx):
    from datagen.models.registry import resolve_model

    sfm = resolve_model("sfm", real_model_dir, download=False)
    fitter = PhotoFitter(sfm, ctx=ctx)
    fitted = fitter.fit(FACES / "takeo.ppm")
    assert fitted.albedo.tiles == 1 and (fitted.albedo.confidence >= SEEN).mean() > 0.3
    rendered = fitter.rerender(fitted)
    region = fitter.seen_mask(fitted)
    difference = rendered.colour[0][..., :3].astype(float) - fitted.crop.astype(float)
    assert 10 * np.log10(255 ** 2 / (difference[region] ** 2).mean()) >= 25


def _scene(fitter, fitted):
    from datagen.synth.geometry import build_scenes

    return build_scenes(fitter.model, [fitted.params()])


def test_library_round_trip_and_one_model_per_library(fitter, ict_model, real_model_dir, tmp_path):
    from datagen.models.registry import resolve_model

    fitted = fitter.fit(FACES / "takeo.ppm", name="takeo")
    library = TextureLibrary(tmp_path / "lib")
    library.add(fitted, ict_model)
    library.add(fitted, ict_model)  # the same name again replaces the entry
    assert [e["name"] for e in library.entries()] == ["takeo"]
    loaded = library.load("takeo")
    np.testing.assert_allclose(loaded.fit.identity, fitted.fit.identity, atol=1e-6)
    np.testing.assert_allclose(loaded.light_sh, fitted.light_sh, atol=1e-6)
    np.testing.assert_allclose(loaded.albedo.albedo, fitted.albedo.albedo, rtol=1e-3, atol=1e-3)  # float16
    assert not list((tmp_path / "lib").glob(".*partial"))
    with pytest.raises(Exception, match="a UV layout belongs to one model"):
        library.add(fitted, resolve_model("sfm", real_model_dir, download=False))


def test_detector_finds_one_face_and_refuses_several():
    detector = Detector()
    image = read_photo(FACES / "astronaut.png")
    lm = detector(image, "astronaut.png")
    assert lm.shape == (68, 2)
    assert 40 < interocular_distance(lm) < 200 and (lm > 0).all() and (lm < 512).all()
    with pytest.raises(LandmarkError, match="breakingbad.jpg: [2-9] faces found"):
        detector(read_photo(FACES / "breakingbad.jpg"), "breakingbad.jpg")
    with pytest.raises(LandmarkError, match="blank: no face found"):
        detector(np.full((200, 200, 3), 128, np.uint8), "blank")


def test_detector_finds_a_small_face_and_every_face_of_a_group_photo():
    detector = Detector()
    for name, faces_at_least in (("einstein.jpg", 1), ("breakingbad.jpg", 2)):
        # einstein.jpg: a ~90-pixel face in an 817 x 1024 photo, missed by the face mesh's own detector
        truth = read_pts((FACES / name).with_suffix(".pts"))
        faces = detector.faces(read_photo(FACES / name))
        assert len(faces) >= faces_at_least
        areas = [np.prod(f.max(0) - f.min(0)) for f in faces]
        assert areas == sorted(areas, reverse=True)
        found = matching_face(faces, truth)
        assert found is not None and found.shape == (68, 2)
        assert np.linalg.norm(found - truth, axis=1).mean() < 0.25 * interocular_distance(truth)
    assert matching_face(faces, truth + 2000) is None


def test_fit_command_reports_each_photo_and_skips_bad_ones(tmp_path, real_model_dir):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "takeo.ppm").write_bytes((FACES / "takeo.ppm").read_bytes())
    (photos / "takeo.pts").write_bytes((FACES / "takeo.pts").read_bytes())
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "blank.png").write_bytes(_blank_png())
    result = CliRunner().invoke(cli, ["fit", str(photos), "--out", str(tmp_path / "lib"), "--model-dir",
                                      str(real_model_dir)])
    assert result.exit_code == 0, result.output
    assert "broken.jpg: unreadable photo" in result.output
    assert "skipped" in result.output and "blank.png: no face found" in result.output
    assert "takeo.ppm: landmark error" in result.output and "1 of 3 photos fitted" in result.output
    listing = CliRunner().invoke(cli, ["textures", "list", str(tmp_path / "lib")])
    assert "takeo" in listing.output and "inherits the licence of the source photo" in listing.output
    sheet = tmp_path / "sheet.png"
    shown = CliRunner().invoke(cli, ["textures", "show", str(tmp_path / "lib"), "takeo", "-o", str(sheet),
                                     "--model-dir", str(real_model_dir)])
    assert shown.exit_code == 0 and sheet.stat().st_size > 10_000
    none = CliRunner().invoke(cli, ["fit", str(photos / "broken.jpg"), "--out", str(tmp_path / "lib2"),
                                    "--model-dir", str(real_model_dir)])
    assert none.exit_code == 1 and "0 of 1 photos fitted" in none.output


def _blank_png():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(buffer, "PNG")
    return buffer.getvalue()


# --- jobs that use fitted photos


@pytest.fixture(scope="module")
def takeo_library(fitter, ict_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("textures") / "lib"
    TextureLibrary(path).add(fitter.fit(FACES / "takeo.ppm", name="takeo"), ict_model)
    return path


def _photo_job(real_model_dir, library, extra=""):
    from datagen.spec import parse_spec

    text = f'''name = "photo"
num_samples = 6
[model]
name = "{real_model_dir / "ict-facekit"}"
[render]
width = 128
height = 128
[photoreal]
library = "{library}"
{extra}
'''
    return parse_spec(text, "<photo>")


def test_photorealistic_job_rerenders_the_photo_with_new_pose_and_consistent_ground_truth(
        takeo_library, ict_model, real_model_dir, ctx):
    from datagen.run.generator import FaceGenerator
    from datagen.synth.render import Renderer

    spec = _photo_job(real_model_dir, takeo_library)
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, 128, 128, ctx=ctx))
    arrays = generator.generate(range(6))
    fitted = TextureLibrary(takeo_library).load("takeo")
    assert (arrays["params/albedo_source"] == 0).all() and (arrays["params/background"] == [2, 0]).all()
    np.testing.assert_allclose(arrays["params/identity"][0], fitted.fit.identity)
    change = np.degrees(arrays["params/rotation"] - fitted.fit.rotation)
    assert (np.abs(change[:, 0]) <= 20.001).all() and np.abs(change).max() > 1  # new poses, within range
    assert ((arrays["depth"] > 0) == (arrays["segmentation"] > 0)).all()
    # away from the head the image is the photo itself (the warp is pinned at the border)
    photo = np.asarray(read_photo(FACES / "takeo.ppm"))
    corner = arrays["image"][:, :12, :12].astype(int)
    backdrop = generator.composer.layers(0).image[:12, :12].astype(int)
    assert np.abs(corner - backdrop).max() <= 3 and photo.ndim == 3
    # the face is the photo's greyscale face, re-rendered: grey pixels, not the procedural skin
    face = arrays["segmentation"] == 1
    rgb = arrays["image"][face].astype(int)
    assert np.abs(rgb - rgb.mean(-1, keepdims=True)).max() <= 2
    again = FaceGenerator(spec, ict_model, generator.renderer).generate([3])
    np.testing.assert_array_equal(again["image"][0], arrays["image"][3])  # any sample regenerates alone


def test_generated_faces_draw_albedo_from_libraries_at_the_configured_rate(takeo_library, ict_model, ctx):
    from datagen.run.generator import FaceGenerator
    from datagen.synth.render import Renderer
    from conftest import tiny_spec

    renderer = Renderer(ict_model, 96, 96, ctx=ctx)
    for probability, expected in ((1.0, 0), (0.0, -1)):
        spec = tiny_spec(Path("unused"), size=96, top="[sampling.appearance]\n"
                         f'texture_libraries = ["{takeo_library}"]\ntexture_probability = {probability}')
        spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, name="ict-facekit"))
        arrays = FaceGenerator(spec, ict_model, renderer).generate(range(4))
        assert (arrays["params/albedo_source"] == expected).all()


def test_libraries_of_another_model_and_non_square_photo_jobs_are_refused(takeo_library, real_model_dir):
    from datagen.errors import DatagenError, SpecError
    from datagen.models.registry import resolve_model
    from datagen.photo.library import load_photos
    from datagen.spec import parse_spec

    with pytest.raises(DatagenError, match="fitted with model 'ict-facekit', not this job's 'sfm'"):
        load_photos([takeo_library], resolve_model("sfm", real_model_dir, download=False))
    with pytest.raises(SpecError, match="render.width: must equal height for photo-realistic jobs"):
        parse_spec(f'name = "x"\n[render]\nwidth = 100\n[photoreal]\nlibrary = "{takeo_library}"\n', "<x>")


def test_a_refitted_library_is_another_job(takeo_library, real_model_dir, tmp_path):
    import shutil

    from datagen.errors import DatagenError
    from datagen.run.job import run_job

    library = tmp_path / "lib"
    shutil.copytree(takeo_library, library)
    from datagen.spec import parse_spec

    text = _photo_job(real_model_dir, library).source_text.replace("num_samples = 6", "num_samples = 2")
    text = text.replace("width = 128\nheight = 128", "width = 64\nheight = 64")
    spec = parse_spec(text, "<photo>")
    out = tmp_path / "out"
    assert run_job(spec, out, workers=1, log=lambda m: None).generated == 1
    assert run_job(spec, out, workers=1, log=lambda m: None).generated == 0  # resumes: nothing to do
    index = library / "index.json"
    index.write_text(index.read_text() + "\n")  # the library was refitted
    with pytest.raises(DatagenError, match="holds a different job"):
        run_job(spec, out, workers=1, log=lambda m: None)


# --- photos as users have them: 16-bit, rotated by EXIF, very large


def test_a_16_bit_photo_is_read_at_its_brightness_and_its_face_found(tmp_path):
    from datagen.photo.landmarks import Detector

    grey = np.asarray(Image.open(SHARED / "faces" / "takeo.ppm").convert("L"))
    path = tmp_path / "takeo16.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode == "I;16"
    image = read_photo(path)
    assert image.dtype == np.uint8 and np.abs(image[..., 0].astype(int) - grey).max() <= 1
    assert len(Detector().faces(image)) == 1


def test_a_photo_rotated_by_its_exif_orientation_is_read_upright(tmp_path):
    photo = np.asarray(Image.open(SHARED / "faces" / "takeo.ppm").convert("RGB"))
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(photo, 1)))  # what a phone held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_photo(tmp_path / "phone.jpg")
    assert upright.shape == photo.shape
    assert np.abs(upright.astype(int) - photo).mean() < 3  # JPEG's loss only


def test_large_photos_read_quietly_and_bombs_are_one_clear_error(tmp_path, monkeypatch):
    import warnings

    import PIL.Image

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 is "large", over 2000 pixels a bomb
    Image.new("RGB", (40, 40), "white").save(tmp_path / "large.png")
    Image.new("RGB", (50, 50), "white").save(tmp_path / "bomb.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_photo(tmp_path / "large.png").shape == (40, 40, 3)
    with pytest.raises(PhotoError, match=r"bomb.png: too large to read \(over 0 megapixels, Pillow's limit"):
        read_photo(tmp_path / "bomb.png")


def test_detection_prints_nothing_of_mediapipes_own_logs():
    import subprocess
    import sys

    code = (f"from datagen.photo.landmarks import Detector; from datagen.photo.fitter import read_photo\n"
            f"print(len(Detector().faces(read_photo({str(FACES / 'takeo.ppm')!r}))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "1\n"
    # Without the redirection: "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "W0000 00:00:...
    # inference_feedback_manager.cc:114] ...". (A first run on a new machine may print other packages'
    # one-off notes, such as a font cache being built; those are not MediaPipe's.)
    native = [line for line in result.stderr.splitlines()
              if "TensorFlow Lite" in line or "absl::" in line or re.match(r"^[IWEF]\d{4} ", line)]
    assert native == [], result.stderr


def test_textures_show_names_the_entries_of_a_library(takeo_library, real_model_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["textures", "show", str(takeo_library), "nobody", "--model-dir", str(real_model_dir)])
    assert result.exit_code == 1 and "'nobody' is not in" in result.output and "its entries: takeo" in result.output
    result = runner.invoke(cli, ["textures", "show", str(takeo_library), "takeo", "-o", str(tmp_path / "t.png"),
                                 "--model-dir", str(real_model_dir)])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "t.png").size[1] == 512
