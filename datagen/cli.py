"""The ``datagen`` command: parse, call the library, report. Every command has a Python equivalent."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from .cli_options import MODEL_DIR, progress_callback as _progress
from .cli_reconstruction import evaluate, reconstruct, train
from .errors import DatagenError
from .progress import Progress

JOB = click.argument("job", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
SETTINGS = click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Change a job key (TOML value).")


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM and PBS send on pre-emption or at the walltime, and ``kill``): a Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


class _Group(click.Group):
    """Turns library errors into one 'Error: ...' line, and Ctrl-C or SIGTERM into a clean stop."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DatagenError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt as e:
            how, code = ("Terminated (SIGTERM)", 143) if isinstance(e, Terminated) else ("Interrupted", 130)
            resume = {"generate": ": only complete shards were kept; run the same command again to resume",
                      "train": ": run the same command again to resume from the last epoch's checkpoint",
                      "fit": ": the library holds the photos fitted so far"}
            click.echo(f"\n{how}{resume.get(ctx.invoked_subcommand, '')}.", err=True)
            ctx.exit(code)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli()


@click.group(cls=_Group)
@click.version_option(package_name="datagen")
def cli():
    """facegen: synthetic 3D face training data (3DMM sampling, headless OpenGL, sharded HDF5)."""


for _command in (train, reconstruct, evaluate):
    cli.add_command(_command)


def _spec(job: Path | None, samples: int | None = None, settings=()):
    from .spec import load_default_spec, load_spec, with_overrides, with_settings

    spec = with_settings(load_spec(job) if job else load_default_spec(), settings)
    return with_overrides(spec, num_samples=samples) if samples else spec


@cli.command()
@JOB
@MODEL_DIR
def check(job, model_dir):
    """Validate JOB (default: the embedded quickstart) and everything it reads; say what it would generate.

    Checks the keys and values, that the model is installed, that each texture library exists,
    was fitted with that model and has entries, and that the background folder holds images.
    """
    from .run.job import check_job

    spec = _spec(job)
    found = check_job(spec, model_dir)
    click.echo(f"{spec.name}: {spec.num_samples} samples in {spec.num_shards} shards of "
               f"{spec.samples_per_shard}, {spec.render.width}x{spec.render.height}, model {spec.model.name}")
    extra = [f"model {found.model.name}: {found.model.num_vertices} vertices, {found.model.licence}"]
    if found.texture_entries:
        extra.append(f"{found.texture_entries} fitted photos in the texture libraries")
    if found.background_images:
        extra.append(f"{found.background_images} background images")
    click.echo("  " + "; ".join(extra))


@cli.command()
@JOB
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: data/<job name>).")
@click.option("--workers", type=int, default=None,
              help="Worker processes of a local cluster (default: the job's; 0 = one per GPU, else one per core).")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler, e.g. tcp://head:8786.")
@click.option("--cluster", "cluster_kind", type=click.Choice(["local", "scheduler", "slurm", "pbs"]), default=None,
              help="Where to run (default: the job's [cluster] kind, local unless it says otherwise).")
@click.option("--jobs", type=int, default=None, help="Batch jobs to submit with --cluster slurm/pbs (default: the job's).")
@click.option("--samples", type=int, default=None, help="Override the job's num_samples.")
@click.option("--force", is_flag=True, help="Discard an output made by a different job.")
@MODEL_DIR
def generate(job, out, workers, scheduler, cluster_kind, jobs, samples, force, model_dir):
    """Render JOB's samples on dask and write HDF5 shards and a manifest.

    JOB defaults to the embedded quickstart (jobs/quickstart.toml). Running the same job into
    the same output again resumes: complete shards are kept, missing or invalid ones redone.
    """
    from .run.job import default_output, run_job

    spec = _spec(job, samples)
    out = out or default_output(spec)
    clips = f" (clips of {spec.video.frames} frames)" if spec.video.is_clip else ""
    click.echo(f"{spec.name}: {spec.num_samples} samples{clips}, {spec.num_shards} shards -> {out}")
    with Progress(spec.num_samples, "generated", stream=click.get_text_stream("stdout")) as bar:
        summary = run_job(spec, out, model_dir=model_dir, workers=workers, scheduler=scheduler, force=force,
                          progress=bar, log=bar.message, cluster_kind=cluster_kind, jobs=jobs)
    click.echo(f"done: {summary.samples} samples, {summary.shards} shards ({summary.generated} generated, "
               f"{summary.skipped} kept), {summary.bytes / 2**20:.1f} MiB, {summary.seconds:.1f} s, "
               f"{summary.samples_per_second:.1f} samples/s{_frame_rate(spec, summary)}, {summary.retries} retries; in {out}")


def _frame_rate(spec, summary) -> str:
    """A video job's rate in frames too (a sample is a clip)."""
    return f" ({summary.samples_per_second * spec.video.frames:.1f} frames/s)" if spec.video.is_clip else ""


@cli.command()
@JOB
@SETTINGS
@click.option("-n", "count", type=int, default=16, show_default=True, help="How many samples.")
@click.option("--start", type=int, default=0, show_default=True, help="Index of the first sample.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("preview.png"),
              show_default=True, help="Where to save the contact sheet (PNG).")
@MODEL_DIR
def preview(job, settings, count, start, output, model_dir):
    """Render a few of JOB's samples in this process and save a contact sheet.

    Each sample shows the image with landmarks (green visible, red hidden), the segmentation, the depth and
    the normals; nothing else is written. --set previews an option, e.g. --set sampling.hair.probability=1.
    A video job's clips: an animation (-o clips.webp, .gif or .png; default preview.webp), its flow
    picture (clips-flow.png) and its frames in rows (clips-strip.png).
    """
    from .models.registry import resolve_model
    from .run.generator import preview_sheet

    spec = _spec(job, settings=settings)
    model = resolve_model(spec.model_reference(), model_dir, progress=_progress("downloading"))
    sheet = preview_sheet(spec, model, count, start)
    if spec.video.is_clip:  # an animation (by the suffix: .webp, .gif, .png), its flow picture and a strip
        paths = sheet.save(output.with_suffix(".webp") if output == Path("preview.png") else output)
        click.echo(f"{', '.join(map(str, paths))}: {count} clips of {spec.name} (from index {start}), "
                   f"{spec.video.frames} frames each")
        return
    sheet.save(output)
    click.echo(f"{output}: {count} samples of {spec.name} (from index {start})")


def _dataset_folder(path: Path | None) -> Path:
    """PATH, or where ``datagen generate`` writes the default job (data/<its name>)."""
    from .run.job import default_output

    if path is None:
        path = default_output(_spec(None))
    if not path.is_dir():
        raise click.UsageError(f"{path} is not a folder: give the dataset folder 'datagen generate' wrote")
    return path


@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="Check structure only; skip reading every array and its checksum.")
def inspect(path, quick):
    """Print a dataset's size, schema and parameter statistics, and validate every shard.

    PATH defaults to where 'datagen generate' writes the default job (data/quickstart). Exit status 1 if a
    shard is missing, truncated or corrupt, or the folder holds shard files its manifest does not list.
    """
    from .data.inspection import format_report, inspect_dataset

    report = inspect_dataset(_dataset_folder(path), deep=not quick)
    click.echo(format_report(report))
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("indices", nargs=-1, required=True, type=click.IntRange(min=0))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Mesh file (.obj or .ply) for one sample; a folder for several (default: sample-<index>.obj here).")
@click.option("--ply", is_flag=True, help="Write .ply instead of .obj where the name is chosen for you.")
@MODEL_DIR
def mesh(path, indices, output, ply, model_dir):
    """Write the 3D face of dataset samples INDICES as meshes (camera space, mm) for MeshLab or Blender.

    The vertices are the stored ones, else rebuilt from the parameters: the mesh lines up with the image.
    """
    from .data.dataset import ShardedDataset
    from .data.meshes import write_sample_meshes

    dataset = ShardedDataset(path, model_dir=str(model_dir) if model_dir else None)
    for written in write_sample_meshes(dataset, indices, output, ply):
        click.echo(f"{written}: from {path}")


@cli.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The texture library folder (created, or added to).")
@click.option("--landmarks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="iBUG-68 .pts file of a single photo (default: <photo>.pts beside it, else detected).")
@click.option("--model", "model_name", default="ict-facekit", show_default=True, help="Model to fit.")
@click.option("--no-detect", is_flag=True, help="Skip photos without a .pts file instead of detecting landmarks.")
@click.option("--refit", is_flag=True, help="Fit again the photos the library has already (default: keep them).")
@click.option("--workers", type=int, default=0, help="Local workers (default: one per GPU, else per core; 1: this process).")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler, e.g. tcp://head:8786.")
@click.option("--cluster", "cluster_kind", type=click.Choice(["local", "scheduler", "slurm", "pbs"]), default=None,
              help="Where to run (default: local; slurm/pbs: the [cluster] defaults, see README).")
@click.option("--jobs", type=int, default=1, show_default=True, help="Batch jobs to submit with --cluster slurm/pbs.")
@MODEL_DIR
def fit(photos, out, landmarks, model_name, no_detect, refit, workers, scheduler, cluster_kind, jobs, model_dir):
    """Fit the morphable model to PHOTOS (files or folders) and add their albedo and lighting to a library.

    One line per photo (its landmark error; or why it was skipped: unreadable, no face, several).
    Running it again keeps the photos fitted already. Exit status 1 if no photo could be fitted.
    """
    from .models.registry import resolve_model
    from .run.fit_job import fit_library
    from .spec import ClusterSpec

    resolve_model(model_name, model_dir, progress=_progress("downloading"))  # a download shows its progress
    cluster = ClusterSpec(cluster_kind or ("scheduler" if scheduler else "local"), workers, scheduler or "", jobs=jobs)
    summary = fit_library(photos, out, model_name, model_dir, landmarks, not no_detect, cluster, refit,
                          on_outcome=lambda o: click.echo(o.describe()), log=click.echo)
    click.echo(f"{summary.fitted} of {summary.fitted + len(summary.skipped)} photos fitted ({summary.kept} kept), "
               f"{summary.photos_per_second:.2f} photos/s; {summary.entries} entries in {out}")
    if not summary.fitted and not summary.kept:
        sys.exit(1)


@cli.group()
def textures():
    """Look at texture libraries made by 'datagen fit'."""


@textures.command("list")
@click.argument("library", type=click.Path(exists=True, file_okay=False, path_type=Path))
def list_textures(library):
    """One line per fitted photo: name, landmark error, photometric error (RMS, linear RGB), texels seen, source."""
    from .photo.library import TextureLibrary, entry_line

    index = TextureLibrary(library).index()
    click.echo(f"{library}: {len(index['entries'])} entries, model {index['model']}")
    for e in index["entries"]:
        click.echo(entry_line(e))


@textures.command("show")
@click.argument("library", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to save the picture (default: <name>.png).")
@MODEL_DIR
def show_texture(library, name, output, model_dir):
    """Save a picture of one entry: the photo with fitted landmarks, its re-rendering, albedo and confidence."""
    from .photo.fitter import entry_picture

    picture, fitted = entry_picture(library, name, model_dir)
    output = output or Path(f"{name}.png")
    picture.save(output)
    click.echo(f"{output}: {name} from {fitted.source}")


@cli.group()
def models():
    """Install and list morphable models."""


@models.command("import")
@click.argument("name", type=click.Choice(["ict-facekit", "sfm"]))
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@MODEL_DIR
def import_model(name, source, model_dir):
    """Convert an upstream model (ICT-FaceKit's FaceXModel/ folder or archive; eos's SFM files) into the model directory."""
    from .models.registry import default_model_dir, install_model

    target = install_model(name, source, model_dir, progress=_progress(f"converting {name}", unit="files"))
    click.echo(f"{name}: installed in {target}")
    click.echo(f"(model directory: {default_model_dir(model_dir)})")


@models.command("fetch")
@click.argument("name", type=click.Choice(["ict-facekit", "sfm"]))
@MODEL_DIR
def fetch(name, model_dir):
    """Download a model from its upstream URL (pinned checksums) and install it."""
    from .models.registry import fetch_model

    click.echo(f"{name}: installed in {fetch_model(name, model_dir, progress=_progress('downloading', unit='bytes'))}")


@models.command("list")
@MODEL_DIR
def list_models(model_dir):
    """Show which models are installed in the model directory."""
    from .models.registry import default_model_dir, installed_models

    click.echo(f"model directory: {default_model_dir(model_dir)}")
    for name, installed, licence in installed_models(model_dir):
        click.echo(f"  {name:<12} {'installed' if installed else 'not installed':<14} {licence}")


if __name__ == "__main__":
    main()
