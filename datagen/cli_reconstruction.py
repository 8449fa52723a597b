"""``datagen train``, ``reconstruct`` and ``evaluate``: the reference reconstructor's commands (extra ``[train]``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_options import MODEL_DIR, progress_callback as _progress

# The defaults that differ between the two networks: CoarseNet (parameters from a 112-pixel crop)
# and FineNet (a U-Net over a 128-pixel crop, whose batches cost more per sample).
COARSE_DEFAULTS = {"size": 112, "width": 32, "batch_size": 64, "learning_rate": 2e-3}
FINE_DEFAULTS = {"size": 128, "width": 16, "batch_size": 16, "learning_rate": 1e-3}


@click.command()
@click.option("--data", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A generated dataset; repeat it to train on several together (e.g. generated and photo-realistic).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, logs).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--minutes", type=float, default=0.0, help="Time budget; training and its learning-rate decay end by it.")
@click.option("--steps", type=click.IntRange(min=0), default=0, help="Budget of optimiser steps, as --minutes.")
@click.option("--batch-size", type=int, default=None, help="Samples per step (default: 64; FineNet 16).")
@click.option("--learning-rate", type=float, default=None, help="Peak learning rate (default: 2e-3; FineNet 1e-3).")
@click.option("--size", type=int, default=None,
              help="Network input size, pixels: a square crop around the face (default: 112; FineNet 128).")
@click.option("--width", type=int, default=None, help="Channels of the first encoder stage (default: 32; FineNet 16).")
@click.option("--points", type=click.IntRange(min=0), default=500, show_default=True,
              help="Dense 2D points (face vertices) the network predicts and reconstructions are fitted to; 0: "
                   "the regressed parameters are the reconstruction.")
@click.option("--workers", type=int, default=None,
              help="DataLoader worker processes (augmentation runs there); default: none on a CPU with at most "
                   "4 cores, else up to 8.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming from OUT/last.pt.")
@click.option("--fine", is_flag=True, help="Train FineNet (the detail: depth_fine, normal_fine) on top of the "
              "CoarseNet given by --coarse; the data needs fine ground truth (jobs/details.toml).")
@click.option("--tracker", is_flag=True, help="Train the tracking network on a video dataset's frame pairs "
              "([video] frames > 1), from the CoarseNet given by --coarse.")
@click.option("--coarse", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --fine or --tracker: the CoarseNet checkpoint it builds on (carried in its checkpoints).")
@MODEL_DIR
def train(data, out, epochs, minutes, steps, batch_size, learning_rate, size, width, points, workers, fresh, fine,
          tracker, coarse, model_dir):
    """Train the reference CoarseNet (or, with --fine, FineNet; with --tracker, the tracking network) on a
    dataset's shards (resumes from OUT/last.pt)."""
    from .reconstruction import require_torch

    require_torch()
    from .reconstruction.runner import train as run
    from .reconstruction.training import TrainConfig

    if coarse and not (fine or tracker):
        raise click.UsageError("--coarse is FineNet's and the tracker's: give --fine or --tracker too")
    given = {"size": size, "width": width, "batch_size": batch_size, "learning_rate": learning_rate}
    chosen = {k: v if v is not None else (FINE_DEFAULTS if fine else COARSE_DEFAULTS)[k] for k, v in given.items()}
    config = TrainConfig(data=[str(d) for d in data] if len(data) > 1 else str(data[0]), out=str(out), epochs=epochs,
                         minutes=minutes, steps=steps, points=points, workers=workers, fine=fine, tracker=tracker,
                         coarse=coarse or "",
                         model_dir=str(model_dir) if model_dir else None, **chosen)
    final = run(config, log=click.echo, resume=not fresh)
    metric = lambda name: final.get(name, float("nan"))  # noqa: E731
    if fine:
        click.echo(f"done: {out}/best.pt (held-out fine depth error {metric('fine_depth_error_mm'):.3f} mm, the coarse "
                   f"reconstruction's {metric('coarse_depth_error_mm'):.3f} mm; normal error "
                   f"{metric('fine_normal_error_deg'):.2f} deg, coarse {metric('coarse_normal_error_deg'):.2f} deg)")
        return
    click.echo(f"done: {out}/best.pt (held-out vertex error {metric('vertex_error_mm'):.2f} mm, {metric('error_ratio'):.2f} "
               f"of the mean face's; landmark NME {100 * metric('landmark_nme'):.1f}%)")


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Mesh file (.obj or .ply) for one photo; a folder for several (default: beside each photo).")
@click.option("--landmarks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="iBUG .pts of a single photo (default: <photo>.pts beside it, else detected).")
@click.option("--all-faces", is_flag=True, help="Every detected face of a photo, not only the largest: the "
              "others go to <name>-1.obj, <name>-2.obj, ... (largest first).")
@click.option("--fine", is_flag=True, help="The detailed mesh (FineNet's detail, face subdivided) and a normal-map "
              "picture <name>-detail.png; needs a checkpoint from 'datagen train --fine'.")
@MODEL_DIR
def reconstruct(photos, checkpoint, output, landmarks, all_faces, fine, model_dir):
    """Reconstruct a 3D face from each photo: mesh (.obj with UVs, or .ply), parameters (.json), overlay (.png).

    With a tracker's checkpoint ('datagen train --tracker'), PHOTOS is one video file (extra [video]) or a
    folder of frames, and -o the folder that gets a mesh and parameters per frame (frame-00000.obj, ...)."""
    from .reconstruction import require_torch

    require_torch()
    from .reconstruction.inference import load_checkpoint

    if load_checkpoint(checkpoint).get("kind") == "tracker":
        _reconstruct_video(photos, checkpoint, output, landmarks, model_dir)
        return
    from .reconstruction.fine_inference import FineReconstructor
    from .reconstruction.inference import Reconstructor, reconstruct_photos

    detail = FineReconstructor(checkpoint, model_dir) if fine else None
    reconstructor = detail.coarse if detail else Reconstructor(checkpoint, model_dir)
    done, found = 0, {}
    for face in reconstruct_photos(photos, reconstructor, output, landmarks, all_faces, detail):
        if face.skipped:
            click.echo(f"skipped {face.skipped}")
            continue
        done += 1
        found[face.photo] = face.faces_found
        vertices = len(face.fine.vertices) if face.fine else len(face.result.vertices)
        extra = f", {face.mesh.stem}-detail.png" if face.fine else ""
        click.echo(f"{face.photo}: {face.mesh} ({vertices} vertices), {face.mesh.with_suffix('.json').name}, "
                   f"{face.mesh.stem}-overlay.png{extra} [landmarks: {face.landmark_source}]")
    for photo, faces in found.items():
        if faces > 1 and not all_faces:
            click.echo(f"{photo}: {faces} faces found, the largest reconstructed (--all-faces: every one)")
    if not done:
        sys.exit(1)


def _reconstruct_video(sources, checkpoint, output, landmarks, model_dir):
    from .photo.landmarks import read_pts
    from .reconstruction.tracking_inference import Tracker, reconstruct_video

    if len(sources) != 1:
        raise click.UsageError("a tracker's checkpoint tracks one video file or frame folder at a time")
    source = sources[0]
    default = source.with_suffix("") if source.is_file() else source.parent / f"{source.name}-meshes"
    out = output or default
    result = reconstruct_video(source, Tracker(checkpoint, model_dir), out, read_pts(landmarks) if landmarks else None,
                               log=click.echo)
    click.echo(f"{source}: {result.frames} frames tracked -> {result.folder}/frame-*.obj, .json "
               f"(an overlay every 10 frames) [first frame's landmarks: {result.landmark_source}]")


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Synthetic dataset: scored on its held-out split (the last 5% of samples).")
@click.option("--photos", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of photos with 68-point .pts annotations.")
@click.option("--samples", type=int, default=1000, show_default=True, help="Held-out samples (of a video dataset, clips) to score.")
@click.option("--benchmark", nargs=2, type=(click.Choice(["aflw2000"]), click.Path(exists=True, file_okay=False)),
              default=None, metavar="aflw2000 DIR", help="A benchmark and its folder: AFLW2000-3D (.jpg with .mat, "
              "or with .pts and yaw.csv), scored as 3DDFA/SynergyNet do.")
@click.option("--crop", type=click.Choice(["truth", "detected"]), default="truth", show_default=True,
              help="Benchmark crops: from the ground-truth landmarks' box (the protocol's), or the detected face.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the benchmark's per-image rows here.")
@click.option("--overlays", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write each photo's reconstruction overlay here (and a sheet of the benchmark's).")
@MODEL_DIR
def evaluate(checkpoint, data, photos, samples, benchmark, crop, csv_path, overlays, model_dir):
    """Score a checkpoint: dense vertex error and landmark NME on synthetic data (with a FineNet
    checkpoint, also fine depth and normal errors; with a tracker's, on a video dataset's held-out clips:
    per-frame errors and jitter next to its CoarseNet frame by frame), landmark NME on real photos, and a
    benchmark's protocol (AFLW2000-3D)."""
    from .reconstruction import require_torch

    require_torch()
    from .reconstruction.evaluation import evaluate_photos, evaluate_synthetic, photo_report, synthetic_report
    from .reconstruction.inference import Reconstructor

    reconstructor = Reconstructor(checkpoint, model_dir)
    if data and reconstructor.kind == "tracker":
        from .reconstruction.tracking_evaluation import evaluate_tracking, tracking_report
        from .reconstruction.tracking_inference import Tracker

        result = evaluate_tracking(Tracker(checkpoint, model_dir), data, samples, log=click.echo,
                                   model_dir=str(model_dir) if model_dir else None)
        click.echo("\n".join(tracking_report(result)))
        data = None
    if data:
        click.echo("\n".join(synthetic_report(evaluate_synthetic(reconstructor, data, samples))))
        if reconstructor.kind == "fine":
            from .reconstruction.fine_evaluation import evaluate_fine_synthetic, fine_report
            from .reconstruction.fine_inference import FineReconstructor

            result = evaluate_fine_synthetic(FineReconstructor(checkpoint, model_dir), data, samples, log=click.echo)
            click.echo("\n".join(fine_report(result)))
    if photos:
        click.echo("\n".join(photo_report(evaluate_photos(reconstructor, photos, overlays))))
    if benchmark:
        from .reconstruction.benchmark import benchmark_report, evaluate_aflw2000

        result = evaluate_aflw2000(reconstructor, benchmark[1], crop, csv_path, overlays,
                                   progress=_progress("benchmark", unit="images"))
        click.echo("\n".join(benchmark_report(result)))
