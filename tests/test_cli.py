import shutil

from click.testing import CliRunner
from PIL import Image

from datagen.cli import cli


def _job(tmp_path, model_dir):
    job = tmp_path / "job.toml"
    job.write_text(f'name = "clitest"\nnum_samples = 6\n[model]\nname = "{model_dir}"\n'
                   f'[render]\nwidth = 64\nheight = 64\n[output]\nsamples_per_shard = 3\n[cluster]\nworkers = 1\n')
    return job


def test_check_reports_and_rejects(tmp_path, tiny_model_dir):
    runner = CliRunner()
    result = runner.invoke(cli, ["check", str(_job(tmp_path, tiny_model_dir))])
    assert result.exit_code == 0 and "clitest: 6 samples in 2 shards of 3, 64x64" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[render]\nwidht = 3\n')
    result = runner.invoke(cli, ["check", str(bad)])
    assert result.exit_code == 1
    assert f"Error: {bad}: line 3: render.widht: unknown key (did you mean width?)" in result.output


def test_generate_inspect_and_detect_a_truncated_shard(tmp_path, tiny_model_dir):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(cli, ["generate", str(_job(tmp_path, tiny_model_dir)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "done: 6 samples, 2 shards (2 generated, 0 kept)" in result.output
    result = runner.invoke(cli, ["inspect", str(out)])
    assert result.exit_code == 0 and "OK: all 2 shards valid" in result.output
    assert "params/light_sh" in result.output and "yaw" in result.output
    data = (out / "shard-00001.h5").read_bytes()
    (out / "shard-00001.h5").write_bytes(data[: len(data) // 3])
    result = runner.invoke(cli, ["inspect", str(out)])
    assert result.exit_code == 1
    assert "INVALID: 1 of 2 shards" in result.output and "shard-00001.h5: unreadable or truncated" in result.output


def test_preview_writes_a_contact_sheet(tmp_path, tiny_model_dir):
    out = tmp_path / "p.png"
    result = CliRunner().invoke(cli, ["preview", str(_job(tmp_path, tiny_model_dir)), "-n", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.size == (2 * (2 * 64 + 4) - 4, 2 * (2 * 64 + 4) - 4)


def test_models_import_and_list(tmp_path):
    from conftest import SHARED

    runner = CliRunner()
    result = runner.invoke(cli, ["models", "import", "sfm", str(SHARED / "models" / "sfm"), "--model-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["models", "list", "--model-dir", str(tmp_path)])
    assert "sfm          installed" in result.output and "ict-facekit  not installed" in result.output
    shutil.rmtree(tmp_path / "sfm")
