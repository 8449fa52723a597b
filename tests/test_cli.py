import shutil
import sys
import time

import numpy as np
from click.testing import CliRunner
from PIL import Image

from datagen.cli import cli
from datagen.progress import Progress


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


def _run_in_terminal(command, cwd, timeout=180):
    """Run ``command`` with a pseudo-terminal as its stdout and stderr (as a person at a shell does)."""
    import os
    import pty
    import select
    import subprocess

    master, slave = pty.openpty()
    process = subprocess.Popen(command, stdout=slave, stderr=slave, stdin=slave, cwd=cwd, close_fds=True)
    os.close(slave)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the process has exited
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(master)
    return process.returncode, output.decode(errors="replace")


def test_generate_in_a_terminal_draws_a_live_progress_bar(tmp_path, tiny_model_dir):
    code, output = _run_in_terminal([sys.executable, "-m", "datagen.cli", "generate", str(_job(tmp_path, tiny_model_dir)),
                                     "--out", str(tmp_path / "out")], tmp_path)
    assert code == 0, output
    assert "\rgenerated: 3/6 samples (50%)" in output and "\rgenerated: 6/6 samples (100%)" in output
    assert "done: 6 samples, 2 shards (2 generated, 0 kept)" in output and f"in {tmp_path / 'out'}" in output


def test_progress_in_a_log_is_a_line_at_most_every_few_seconds():
    import io

    now = [0.0]
    log = io.StringIO()
    bar = Progress(100, "generated", stream=log, tty=False, every=10.0, clock=lambda: now[0])
    for t in (1.0, 2.0, 12.0, 16.0):
        now[0] = t
        bar.update(25)
    assert log.getvalue().splitlines() == ["generated: 25/100 samples (25%), 25.0 samples/s, 0:03 left",
                                           "generated: 75/100 samples (75%), 6.2 samples/s, 0:04 left",
                                           "generated: 100/100 samples (100%), 6.2 samples/s"]
    early = io.StringIO()
    now[0] = 0.0
    first = Progress(8, "benchmark", unit="images", stream=early, tty=False, clock=lambda: now[0])
    now[0] = 5e-6
    first.update(1)  # a lazy loop's first item, microseconds in: no absurd rate
    assert early.getvalue() == "benchmark: 1/8 images (12%)\n"


def test_inspect_defaults_to_the_default_jobs_output(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["inspect"])
    assert result.exit_code == 2 and "data/quickstart is not a folder" in result.output
    runner = CliRunner()
    assert runner.invoke(cli, ["generate", str(_job(tmp_path, tiny_model_dir)), "--out", "data/quickstart"]).exit_code == 0
    result = runner.invoke(cli, ["inspect"])
    assert result.exit_code == 0 and "OK: all 2 shards valid" in result.output
    assert "skin tone (individual typology angle of the mean skin colour, 6 samples):" in result.output
    assert "yaw (deg):" in result.output and "face height" in result.output


def test_check_fails_on_a_missing_model_or_texture_library(tmp_path, tiny_model_dir):
    runner = CliRunner()
    result = runner.invoke(cli, ["check", str(_job(tmp_path, tiny_model_dir))])
    assert result.exit_code == 0 and "model tiny: " in result.output
    job = tmp_path / "lib.toml"
    job.write_text(f'name = "x"\n[model]\nname = "{tiny_model_dir}"\n[sampling.appearance]\ntexture_libraries = ["nolib"]\n')
    result = runner.invoke(cli, ["check", str(job)])
    assert result.exit_code == 1 and f"Error: {tmp_path / 'nolib'}: not a texture library (no index.json)" in result.output
    job.write_text('name = "x"\n[model]\nname = "sfm"\n')
    result = runner.invoke(cli, ["check", str(job), "--model-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "Error: Model 'sfm' is not installed in" in result.output


def test_mesh_writes_a_samples_face(tmp_path, tiny_model_dir, tiny_model):
    runner = CliRunner()
    out = tmp_path / "out"
    assert runner.invoke(cli, ["generate", str(_job(tmp_path, tiny_model_dir)), "--out", str(out)]).exit_code == 0
    result = runner.invoke(cli, ["mesh", str(out), "4", "-o", str(tmp_path / "face.obj")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "face.obj").read_text().splitlines()
    vertices = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("v ")])
    from datagen.data.dataset import ShardedDataset

    np.testing.assert_allclose(vertices, ShardedDataset(out).vertices(4), atol=1e-3)
    assert sum(line.startswith("f ") for line in lines) == len(tiny_model.triangles)
    result = runner.invoke(cli, ["mesh", str(out), "1", "2", "--ply", "-o", str(tmp_path / "meshes")])
    assert result.exit_code == 0 and (tmp_path / "meshes" / "sample-2.ply").read_text().startswith("ply\n")
    result = runner.invoke(cli, ["mesh", str(out), "6"])
    assert result.exit_code == 1 and "sample 6: the dataset has 6 samples" in result.output
