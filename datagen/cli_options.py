"""What several ``datagen`` commands share: options and the progress of a download or a benchmark."""

from __future__ import annotations

from pathlib import Path

import click

from .progress import Progress

MODEL_DIR = click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Model directory (default: $DATAGEN_MODEL_DIR, then ~/.cache/datagen/models).")


def progress_callback(label: str, unit: str = "bytes"):
    """A callable(done, total) that draws a ``Progress`` once the total is known."""
    state = {}

    def update(done, total):
        if "bar" not in state:
            state["bar"] = Progress(total, label, unit=unit, stream=click.get_text_stream("stdout"), every=10.0)
        bar = state["bar"]
        bar.update(done - bar.done)
        if done >= total:
            bar.close()

    return update
