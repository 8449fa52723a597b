"""Photo-realistic re-rendering: the skin mask of a fitted photo and the composite into the photo."""

import dataclasses
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from datagen.photo.fitter import PhotoFitter
from datagen.photo.library import FittedPhoto, TextureLibrary
from datagen.photo.photoreal import PhotoComposer, face_mask
from datagen.photo.texture import AlbedoMap
from datagen.synth.face_parts import LABEL
from datagen.synth.geometry import build_scenes
from datagen.synth.render import Renderer
from conftest import SHARED

FACES = SHARED / "faces"
SIZE = 160


@pytest.fixture(scope="module")
def fitter(ict_model, ctx):
    return PhotoFitter(ict_model, ctx=ctx)


@pytest.fixture(scope="module")
def library(fitter, ict_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("textures") / "lib"
    for photo in ("image_0010.png", "takeo.ppm"):
        TextureLibrary(path).add(fitter.fit(FACES / photo), ict_model)
    return path


def _psnr(a, b, where):
    return 10 * np.log10(255 ** 2 / max(((a.astype(float) - b.astype(float))[where] ** 2).mean(), 1e-6))


def test_a_photoreal_job_that_changes_nothing_gives_the_photo_back(library, ict_model, real_model_dir, ctx):
    from datagen.run.generator import FaceGenerator
    from datagen.spec import parse_spec

    spec = parse_spec(f'''name = "unchanged"
num_samples = 8
[model]
name = "{real_model_dir / "ict-facekit"}"
[render]
width = {SIZE}
height = {SIZE}
[photoreal]
library = "{library}"
yaw_change_deg = [0.0, 0.0]
pitch_change_deg = [0.0, 0.0]
roll_change_deg = [0.0, 0.0]
new_expression_probability = 0.0
relight_probability = 0.0
''', "<unchanged>")
    generator = FaceGenerator(spec, ict_model, Renderer(ict_model, SIZE, SIZE, ctx=ctx))
    arrays = generator.generate(range(8))
    scored = set()
    for k, photo in zip(arrays["params/background"][:, 1], arrays["image"]):
        fitted = generator.photos.load(k)
        crop = np.asarray(Image.fromarray(fitted.crop).resize((SIZE, SIZE), Image.LANCZOS))
        face = generator.composer.layers(k).face
        face_db, whole_db = _psnr(photo, crop, face), _psnr(photo, crop, np.ones(face.shape, bool))
        print(f"{fitted.name}: {face_db:.1f} dB over {face.sum()} face pixels, {whole_db:.1f} dB over the image")
        assert face.sum() > 0.2 * SIZE * SIZE and face_db >= 30 and whole_db >= 33
        scored.add(fitted.name)
    assert scored == {"image_0010", "takeo"}


def _jaw_open_photo(ict_model, renderer, takeo: FittedPhoto) -> FittedPhoto:
    """A constructed 'photo' of ICT-FaceKit's mean face with its jaw wide open at takeo's pose:
    its face pure green, its head and neck beige, the background blue."""
    jaw = list(ict_model.expression_names).index("jawOpen")
    expression = np.zeros(ict_model.num_expression, np.float32)
    expression[jaw] = 1.0
    size = renderer.width
    from datagen.camera import resize_intrinsics

    fit = dataclasses.replace(takeo.fit, identity=np.zeros_like(takeo.fit.identity), expression=expression,
                              intrinsics=resize_intrinsics(takeo.fit.intrinsics, takeo.crop.shape[0], size, size))
    photo = FittedPhoto("jaw", np.zeros((size, size, 3), np.uint8), fit, takeo.light_sh,
                        AlbedoMap(np.full((8, 8 * takeo.albedo.tiles, 3), 0.5, np.float32),
                                  np.ones((8, 8 * takeo.albedo.tiles), np.float32), takeo.albedo.tiles), "test", "test")
    scenes = build_scenes(ict_model, [photo.params()], topology=renderer.topology)
    segmentation = renderer.render(scenes).segmentation[0]
    crop = np.zeros((size, size, 3), np.uint8)
    crop[:] = (40, 60, 200)
    crop[segmentation > 0] = (200, 170, 140)
    crop[face_mask(segmentation, scenes.landmarks_2d[0])] = (0, 220, 0)
    landmarks = scenes.landmarks_2d[0]
    return dataclasses.replace(photo, crop=crop, fit=dataclasses.replace(fit, landmarks=landmarks, fitted_landmarks=landmarks))


def test_closing_a_wide_open_jaw_leaves_no_pixel_of_the_old_face(library, ict_model, ctx):
    renderer = Renderer(ict_model, SIZE, SIZE, ctx=ctx)
    photo = _jaw_open_photo(ict_model, renderer, TextureLibrary(library).load("takeo"))
    composer = PhotoComposer([photo], ict_model, renderer)
    closed = dataclasses.replace(photo.params(), expression=np.zeros(ict_model.num_expression, np.float32),
                                 sample_index=0, background=np.array([2, 0], np.int64))
    scenes = build_scenes(ict_model, [closed], topology=renderer.topology)
    out = renderer.render(scenes)
    picture, segmentation = composer.compose(0, out.colour[0], out.segmentation[0], out.depth[0], out.normal[0],
                                             scenes.vertices[0], scenes.landmarks_2d[0], closed)
    old_chin, new_chin = photo.fit.landmarks[8, 1], scenes.landmarks_2d[0, 8, 1]
    assert old_chin - new_chin > 10  # the jaw closed by more than 10 pixels
    rgb = picture.astype(int)
    green = (rgb[..., 1] > rgb[..., 0] + 60) & (rgb[..., 1] > rgb[..., 2] + 60)  # the old face's colour
    new_face = face_mask(segmentation, scenes.landmarks_2d[0])
    between = np.zeros_like(green)
    columns = slice(int(scenes.landmarks_2d[0, 5, 0]), int(scenes.landmarks_2d[0, 11, 0]))
    between[int(new_chin) + 3:int(old_chin), columns] = True  # under the new chin, above the old one
    off_head = segmentation == LABEL["background"]
    print(f"green pixels between the jaw lines: {(green & between).sum()}, off the new head: {(green & off_head).sum()}")
    assert (green & between).sum() == 0 and (green & off_head).sum() == 0  # (on the head: a point's own colour)
    assert green[new_face].mean() > 0.5  # the new face itself is the photo's (projected)


def _photo_with_a_fringe(tmp_path):
    """image_0010 with a dark brown fringe painted over the forehead, down to just above the brows."""
    from datagen.photo.landmarks import read_pts

    image = Image.open(FACES / "image_0010.png").convert("RGB")
    landmarks = read_pts(FACES / "image_0010.pts")
    brows = landmarks[17:27]
    top, width = brows[:, 1].min(), brows[:, 0].max() - brows[:, 0].min()
    xs = np.linspace(brows[:, 0].min() - 0.1 * width, brows[:, 0].max() + 0.1 * width, 24)
    bottom = top - 0.08 * width - 0.04 * width * np.sin(xs / width * 25)  # a wavy fringe line
    polygon = [(x, top - 0.6 * width) for x in xs[::-1]] + list(zip(xs, bottom))
    paint = ImageDraw.Draw(image)
    paint.polygon(polygon, fill=(58, 36, 22))
    for k, x in enumerate(np.linspace(xs[0], xs[-1], 40)):  # strands: lighter streaks
        paint.line([(x, top - 0.6 * width), (x + 4, top - 0.1 * width)], fill=(84, 56, 34), width=1 + k % 2)
    image.save(tmp_path / "fringe.png")
    shutil.copy(FACES / "image_0010.pts", tmp_path / "fringe.pts")
    return tmp_path / "fringe.png"


def test_a_fringe_over_the_forehead_is_excluded_from_the_albedo(fitter, tmp_path, monkeypatch):
    fitted = fitter.fit(_photo_with_a_fringe(tmp_path))
    crop = fitted.crop.astype(int)
    painted = (np.abs(crop - [58, 36, 22]).max(-1) < 12) | (np.abs(crop - [84, 56, 34]).max(-1) < 12)
    rendered = fitter.rerender(fitted)
    on_skin = painted & np.isin(rendered.segmentation[0], (LABEL["skin"], LABEL["head_neck"]))
    assert on_skin.sum() > 2000
    print(f"fringe pixels on the face's skin: {on_skin.sum()}, excluded: {fitted.excluded[on_skin].mean():.1%}")
    assert fitted.excluded[on_skin].mean() > 0.9
    brightness = rendered.colour[0][..., :3][on_skin].astype(float).mean()
    # without the skin mask the fringe's colour becomes skin albedo and comes back on re-rendering
    nothing = lambda srgb, *a: (np.zeros(srgb.shape[:2], bool),) * 2  # noqa: E731
    monkeypatch.setattr("datagen.photo.fitter.excluded_pixels", nothing)
    unmasked = fitter.fit(tmp_path / "fringe.png")
    hair_like = fitter.rerender(unmasked).colour[0][..., :3][on_skin].astype(float).mean()
    print(f"re-rendered fringe pixels: mean level {brightness:.0f} with the skin mask, {hair_like:.0f} without")
    assert brightness > 1.8 * hair_like and unmasked.excluded is not None and not unmasked.excluded.any()


# --- texture libraries at scale: resumable fits, the catalogue, entries read when used


def _photos(folder, count):
    folder.mkdir()
    for k in range(count):
        (folder / f"takeo{k}.ppm").write_bytes((FACES / "takeo.ppm").read_bytes())
        (folder / f"takeo{k}.pts").write_bytes((FACES / "takeo.pts").read_bytes())
    return folder


def test_a_fit_resumes_indexes_what_a_killed_run_wrote_and_drops_half_written_entries(
        tmp_path, ict_model, real_model_dir):
    from datagen.run.fit_job import fit_library
    from datagen.spec import ClusterSpec

    photos, library = _photos(tmp_path / "photos", 3), tmp_path / "lib"
    one = ClusterSpec(workers=1)
    first = fit_library([photos / "takeo0.ppm"], library, "ict-facekit", str(real_model_dir), cluster=one)
    assert (first.fitted, first.kept, first.entries) == (1, 0, 1)
    # a run killed after writing an entry but before indexing it, and one killed while writing
    fitter = PhotoFitter(ict_model)
    TextureLibrary(library).write_entry(fitter.fit(photos / "takeo1.ppm", name="takeo1"))
    (library / "takeo2.1234abcd.partial").mkdir()
    (library / "takeo2.1234abcd.partial" / "photo.png").write_bytes(b"half")
    seen = []
    again = fit_library([photos], library, "ict-facekit", str(real_model_dir), cluster=one,
                        on_outcome=lambda o: seen.append(o.photo.name))
    assert (again.fitted, again.kept, again.entries) == (1, 2, 3) and seen == ["takeo2.ppm"]
    assert not list(library.glob("*.partial")) and TextureLibrary(library).names() == ["takeo0", "takeo1", "takeo2"]
    catalogue = TextureLibrary(library).catalogue()
    assert list(catalogue["names"]) == ["takeo0", "takeo1", "takeo2"] and catalogue["identity"].shape == (3, 100)
    refit = fit_library([photos / "takeo0.ppm"], library, "ict-facekit", str(real_model_dir), cluster=one, refit=True)
    assert refit.fitted == 1 and TextureLibrary(library).catalogue()["ids"][0] != catalogue["ids"][0]
    # a refit killed between moving the old entry aside and moving the new one in: the old one comes back
    (library / "takeo1").rename(library / "takeo1.0badc0de.partial.old")
    fit_library([photos / "takeo1.ppm"], library, "ict-facekit", str(real_model_dir), cluster=one)
    assert (library / "takeo1" / "fit.json").exists() and not list(library.glob("*.old"))


def test_a_fit_names_apart_photos_that_share_a_file_name_and_remembers_those_it_cannot_fit(
        tmp_path, real_model_dir):
    from datagen.run.fit_job import fit_library
    from datagen.spec import ClusterSpec

    one, library = ClusterSpec(workers=1), tmp_path / "lib"
    first, second = _photos(tmp_path / "a", 1), tmp_path / "b"
    second.mkdir()
    (second / "takeo0.png").write_bytes((FACES / "image_0010.png").read_bytes())
    (second / "takeo0.pts").write_bytes((FACES / "image_0010.pts").read_bytes())
    (second / "blank.png").write_bytes(np.zeros(10, np.uint8).tobytes())  # not an image
    fit_library([first], library, "ict-facekit", str(real_model_dir), cluster=one)
    outcome = fit_library([second], library, "ict-facekit", str(real_model_dir), cluster=one)
    names = TextureLibrary(library).names()
    assert outcome.fitted == 1 and len(outcome.skipped) == 1 and len(names) == 2 and "takeo0" in names
    other = next(n for n in names if n != "takeo0")
    assert other.startswith("takeo0-") and "image_0010" not in TextureLibrary(library).load("takeo0").source
    tried = []
    again = fit_library([second, first], library, "ict-facekit", str(real_model_dir), cluster=one,
                        on_outcome=lambda o: tried.append(o.photo.name))
    assert (again.fitted, again.kept, tried) == (0, 2, [])  # the unreadable photo is not tried again
    retried = fit_library([second / "blank.png"], library, "ict-facekit", str(real_model_dir), cluster=one,
                          refit=True)
    assert len(retried.skipped) == 1


def test_a_photo_catalogue_keeps_few_entries_in_memory_and_reads_old_libraries(library, ict_model):
    from datagen.photo.library import CATALOGUE, PhotoCatalogue

    photos = PhotoCatalogue([library], ict_model, cache=1)
    assert len(photos) == 2 and [photos[k].name for k in range(2)] == ["image_0010", "takeo"]
    whole = photos.load(1)
    np.testing.assert_array_equal(photos[1].fit.identity, whole.fit.identity)
    np.testing.assert_array_equal(photos[1].light_sh, whole.light_sh)
    assert photos[1].crop_size == whole.crop.shape[0] == 512
    photos.load(0)
    assert list(photos._loaded) == [0]  # the LRU holds one entry
    shutil.copytree(library, library.parent / "old")  # a library written before catalogues
    (library.parent / "old" / CATALOGUE).unlink()
    old = PhotoCatalogue([library.parent / "old"], ict_model)
    np.testing.assert_array_equal(old[1].fit.rotation, photos[1].fit.rotation)


def test_sigterm_stops_a_fit_on_dask_and_the_rerun_completes_it(tmp_path, real_model_dir):
    import signal
    import subprocess
    import sys
    import time

    photos, library = _photos(tmp_path / "photos", 4), tmp_path / "lib"
    command = [sys.executable, "-m", "datagen.cli", "fit", str(photos), "--out", str(library), "--workers", "2",
               "--model-dir", str(real_model_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(library.glob("takeo*/fit.json")):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    assert "Terminated (SIGTERM): the library holds the photos fitted so far." in output and "Traceback" not in output
    assert not list(library.glob("*.partial")) and not (library / ".datagen.lock").exists()
    at = command.index("--workers") + 1
    rerun = subprocess.run(command[:at] + ["1"] + command[at + 1:], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert TextureLibrary(library).names() == sorted(f"takeo{k}" for k in range(4))
    assert "kept" in rerun.stdout


def test_a_landmark_under_the_photos_hair_or_glasses_is_not_visible():
    from types import SimpleNamespace

    from datagen.synth.annotate import landmark_visibility

    depth = np.full((1, 32, 32), 500.0, np.float32)
    segmentation = np.full((1, 32, 32), LABEL["skin"], np.uint8)
    scenes = SimpleNamespace(landmarks_2d=np.array([[[8.5, 8.5], [20.5, 20.5]]], np.float32),
                             landmarks_3d=np.array([[[0, 0, -500.0], [0, 0, -500.0]]], np.float32))
    rendered = SimpleNamespace(depth=depth, segmentation=segmentation)
    assert landmark_visibility(scenes, rendered).tolist() == [[True, True]]
    segmentation[0, 18:23, 18:23] = LABEL["photo_occluder"]  # at the face's own depth: it lies on the skin
    assert landmark_visibility(scenes, rendered).tolist() == [[True, False]]


def test_a_photos_iris_colour_is_its_samples_procedural_iris_where_the_photo_shows_no_eye(library, ict_model, ctx):
    from datagen.data.fields import APPEARANCE_NAMES
    from datagen.photo.library import PhotoCatalogue
    from datagen.synth.sampling import sample_photoreal
    from datagen.synth.skin import IRIS_COLOURS, iris_appearance
    from datagen.spec import parse_spec

    for k, colour in enumerate(IRIS_COLOURS):  # a palette colour is itself at the shader's mean factor
        hue, darkness = iris_appearance(np.asarray(colour) * 1.0)
        assert iris_appearance(np.asarray(colour) * (darkness + 0.3)) == (hue, darkness)
        assert abs(darkness - 0.7) < 1e-6
    assert iris_appearance([0.05, 0.1, 0.25])[0] > 0.82  # bluish: the blue iris
    photos = PhotoCatalogue([library], ict_model)
    assert all(photos[k].iris is not None and np.isfinite(photos[k].iris).all() for k in range(len(photos)))
    np.testing.assert_allclose(photos[1].iris, photos.load(1).iris)
    spec = parse_spec(f'name = "iris"\n[photoreal]\nlibrary = "{library}"\n[render]\nwidth = 96\nheight = 96\n', "<iris>")
    for index in range(6):
        p = sample_photoreal(spec, ict_model, index, photos)
        expected = iris_appearance(photos[int(p.background[1])].iris)
        got = (p.appearance[APPEARANCE_NAMES.index("iris_hue")], p.appearance[APPEARANCE_NAMES.index("iris_darkness")])
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_a_photo_realistic_clip_moves_the_photo_with_the_head_and_its_flow_says_how(library, ict_model, ctx):
    """[photoreal] with [video]: frame 0 is the still sample; the photo's own background follows its warp,
    so warping frame t+1 back by the stored flow reproduces frame t there, as on the face."""
    from scipy.ndimage import binary_erosion, map_coordinates

    from datagen.run.generator import FaceGenerator
    from datagen.spec import parse_spec

    def spec(frames):
        return parse_spec(f'''name = "photoreal-clip"
[render]
width = {SIZE}
height = {SIZE}
[photoreal]
library = "{library}"
[video]
frames = {frames}
head_speed_std_deg = [40.0, 20.0, 10.0]
light_turn_std_deg = 0.0
light_gain_std = 0.0
''', "<photoreal-clip>")

    clip = FaceGenerator(spec(3), ict_model, Renderer(ict_model, SIZE, SIZE, ctx=ctx, flow=True)).generate([1])
    still = FaceGenerator(spec(1), ict_model, Renderer(ict_model, SIZE, SIZE, ctx=ctx)).generate([1])
    np.testing.assert_array_equal(clip["image"][0, 0], still["image"][0])
    assert clip["params/background"][0, 0] == 2  # the fitted photo
    for region in ("face", "photo"):
        warped_errors, unwarped_errors = [], []
        for t in range(2):
            flow = clip["flow_forward"][0, t].astype(np.float32)
            ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
            image, after = clip["image"][0, t].astype(np.float32), clip["image"][0, t + 1].astype(np.float32)
            warped = np.stack([map_coordinates(after[..., c], [ys + flow[..., 1] - 0.5, xs + flow[..., 0] - 0.5], order=1)
                               for c in range(3)], -1)
            drawn = clip["depth"][0, t] > 0
            where = (drawn if region == "face" else ~drawn) & ~clip["occluded_forward"][0, t]
            where = binary_erosion(where, iterations=2)
            warped_errors.append(np.abs(warped - image).mean(-1)[where].mean())
            unwarped_errors.append(np.abs(after - image).mean(-1)[where].mean())
        print(f"{region}: warped {np.mean(warped_errors):.2f} levels, not warped {np.mean(unwarped_errors):.2f}")
        assert np.mean(warped_errors) < 0.75 * np.mean(unwarped_errors)
