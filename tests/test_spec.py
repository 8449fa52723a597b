import re
from pathlib import Path

import pytest

from datagen.errors import SpecError
from datagen.spec import JobSpec, default_spec_text, load_default_spec, load_spec, parse_spec
from conftest import REPO


def test_quickstart_is_the_embedded_default():
    assert (REPO / "jobs" / "quickstart.toml").read_text() == default_spec_text()
    spec = load_default_spec()
    assert spec.name == "quickstart" and spec.num_shards == 4 and spec.model.name == "ict-facekit"


def test_million_job_is_valid():
    spec = load_spec(REPO / "jobs" / "million.toml")
    assert spec.num_samples == 1_000_000
    assert spec.num_shards * spec.output.samples_per_shard >= 1_000_000


def test_defaults_fill_missing_tables():
    spec = parse_spec('name = "x"')
    assert spec == JobSpec(name="x")
    assert spec.sampling.pose.yaw_range_deg == (-90.0, 90.0)


def test_shard_ranges_cover_every_sample_once():
    spec = parse_spec('name = "x"\nnum_samples = 10\n[output]\nsamples_per_shard = 4')
    assert [list(spec.shard_range(i)) for i in range(spec.num_shards)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[sampling.pose]\nyaw_rnge_deg = [0, 1]',
     "job.toml: line 3: sampling.pose.yaw_rnge_deg: unknown key (did you mean yaw_range_deg?)"),
    ('name = "x"\nnum_samples = "many"',
     'job.toml: line 2: num_samples: expected an integer, got "many"'),
    ('name = "x"\n[render]\nwidth = 224\nheight = 8',
     "job.toml: line 4: render.height: must be in [16, 4096]"),
    ('name = "x"\n[sampling.camera]\nfov_deg = [40]',
     "job.toml: line 3: sampling.camera.fov_deg: expected [low, high] as two numbers, got [40]"),
    ('name = "x"\n[sampling.camera]\nfov_deg = [40, 10]',
     "job.toml: line 3: sampling.camera.fov_deg: must be [low, high] with 1 <= low <= high <= 150, got [40.0, 10.0]"),
    ('name = "x"\n[output]\ncompression = "zip"',
     'job.toml: line 3: output.compression: must be one of none, lzf, gzip, lz4, zstd, blosc2, got "zip"'),
    ('name = "x"\n[sampling.background]\nkind = "images"',
     'job.toml: line 2: sampling.background.images_dir: (or texture_libraries) is required when kind = "images"'),
    ('seed = 1', "job.toml: name: is required"),
    ('name = "x"\nrender = 3', "job.toml: line 2: render: must be a table, got 3"),
    ('name = "x"\n[cluster]\nkind = "scheduler"',
     'job.toml: line 2: cluster.scheduler: is required when kind = "scheduler", e.g. "tcp://head:8786"'),
])
def test_bad_specs_name_the_line_and_key(text, message):
    with pytest.raises(SpecError) as e:
        parse_spec(text, "job.toml")
    assert str(e.value) == message


def test_invalid_toml_is_one_clear_error():
    with pytest.raises(SpecError, match=r"^job.toml: not valid TOML: .*line 2"):
        parse_spec('name = "x"\nseed = = 3', "job.toml")


def test_unreadable_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read the job file"):
        load_spec(tmp_path / "missing.toml")


@pytest.mark.parametrize("line, message", [
    ("[sampling.pose]\nyaw_std_deg = inf", "line 3: sampling.pose.yaw_std_deg: expected a finite number, got inf"),
    ("[sampling.identity]\ntruncation = inf", "sampling.identity.truncation: expected a finite number, got inf"),
    ("[sampling.pose]\nroll_std_deg = nan", "sampling.pose.roll_std_deg: expected a finite number, got nan"),
    ("[sampling.pose]\nyaw_range_deg = [-inf, 30]", "expected [low, high] as two finite numbers, got [-inf, 30]"),
])
def test_infinite_and_nan_values_are_refused(line, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(f'name = "x"\n{line}\n', "<job>")


def test_a_binary_file_is_one_clear_error(tmp_path):
    job = tmp_path / "job.toml"
    job.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SpecError, match=re.escape(f"{job}: not a job file (not UTF-8 text; a job file is TOML)")):
        load_spec(job)


def test_paths_in_a_job_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    from datagen.data.manifest import spec_fingerprint

    folder = tmp_path / "jobs"
    folder.mkdir()
    text = ('name = "x"\n[model]\nname = "../models/tiny"\n[photoreal]\nlibrary = "../lib"\n'
            '[sampling.appearance]\ntexture_libraries = ["skins", "/abs/skins"]\n'
            '[sampling.background]\nkind = "images"\nimages_dir = "~/pictures"\n')
    (folder / "job.toml").write_text(text)
    monkeypatch.chdir(tmp_path / "..")
    spec = load_spec(folder / "job.toml")
    assert spec.photoreal.library == "../lib"  # kept as written: the job's identity is where-independent
    assert spec.texture_libraries() == [("../lib", str(tmp_path / "lib"))]
    assert spec.model_reference() == str(tmp_path / "models" / "tiny")
    assert spec.path("skins") == str(folder / "skins") and spec.path("/abs/skins") == "/abs/skins"
    assert spec.path(spec.sampling.background.images_dir) == str(Path.home() / "pictures")
    assert load_spec(REPO / "jobs" / "photoreal.toml").texture_libraries()[0][1] == str(REPO / "textures" / "mylib")
    assert load_default_spec().model_reference() == "ict-facekit"
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "job.toml").write_text(text)
    assert spec_fingerprint(load_spec(moved / "job.toml")) == spec_fingerprint(spec)  # the folder moved: same job


def test_every_shipped_job_file_loads():
    for path in sorted((REPO / "jobs").glob("*.toml")):
        assert load_spec(path).name, path


def test_settings_change_a_job_key_and_are_checked_as_a_job_files():
    from datagen.spec import with_settings

    spec = load_default_spec()
    changed = with_settings(spec, ["sampling.hair.probability=0.5", "render.width = 96", 'sampling.appearance.skin_tones=balanced'])
    assert (changed.sampling.hair.probability, changed.render.width) == (0.5, 96)
    assert changed.sampling.appearance.skin_tones == "balanced" and changed.name == spec.name
    assert with_settings(spec, []) is spec
    for setting, message in (("sampling.hair.probabilty=1", "did you mean probability"), ("render.width=-3", "width"),
                             ("nothing", "KEY=VALUE"), ("name.x=1", "is a key, not a table")):
        with pytest.raises(SpecError, match=message):
            with_settings(spec, [setting])
