"""Finding, downloading and importing models.

A model is looked up by name in the model directory, chosen in this order:
``--model-dir`` (the ``model_dir`` argument), ``$DATAGEN_MODEL_DIR``, then the user cache
(``$XDG_CACHE_HOME/datagen/models``, by default ``~/.cache/datagen/models``). Inside it:

- ``ict-facekit/``: a converted model (``model.json`` + ``.npy``), made by ``datagen models import``;
- ``sfm/``: eos's Surrey Face Model files, loaded through eos.

A job may also name a converted model directory by path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from ..errors import ModelError
from ..files import atomic_directory
from .model_import import import_ict_facekit, load_sfm
from .morphable_model import MorphableModel, load_model, save_model

KNOWN_MODELS = ("ict-facekit", "sfm")


def default_model_dir(model_dir: str | Path | None = None) -> Path:
    if model_dir:
        return Path(model_dir)
    if os.environ.get("DATAGEN_MODEL_DIR"):
        return Path(os.environ["DATAGEN_MODEL_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "datagen" / "models"


@functools.lru_cache(maxsize=1)
def registry() -> dict:
    """Upstream URLs and pinned SHA-256 checksums of every file of the downloadable models."""
    return json.loads(resources.files("datagen.models").joinpath("registry.json").read_text())


def resolve_model(name: str, model_dir: str | Path | None = None, download: bool = True, progress=None) -> MorphableModel:
    """Load a model by name (or converted-model path), downloading it first if it is missing."""
    path = Path(name)
    if name not in KNOWN_MODELS:
        if (path / "model.json").exists():
            return load_model(path)
        raise ModelError(f"unknown model '{name}': use one of {', '.join(KNOWN_MODELS)} "
                         f"or the path of a converted model directory")
    root = default_model_dir(model_dir)
    target = root / name
    if not _installed(name, target):
        if not download:
            raise ModelError(_missing_message(name, root))
        fetch_model(name, root, progress=progress)
    if name == "sfm":
        return load_sfm(target)
    return load_model(target)


def installed_models(model_dir: str | Path | None = None) -> list[tuple[str, bool, str]]:
    """(name, installed?, licence) of every registered model in the model directory."""
    root = default_model_dir(model_dir)
    return [(name, _installed(name, root / name), registry()[name]["licence"]) for name in KNOWN_MODELS]


def _installed(name: str, target: Path) -> bool:
    marker = "sfm_shape_3448.bin" if name == "sfm" else "model.json"
    return (target / marker).exists()


def fetch_model(name: str, model_dir: str | Path | None = None, progress=None) -> Path:
    """Download a model's upstream files, check each against its pinned SHA-256, and install it.

    Args:
      progress: optional callable(bytes_done, bytes_total).
    Raises:
      ModelError: offline or a checksum mismatch; the message says which files to get and where to put them.
    """
    root = default_model_dir(model_dir)
    entry = registry()[name]
    total = sum(f["size"] for f in entry["files"].values())
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-download-") as tmp:
        done = 0
        for filename, info in entry["files"].items():
            url = entry["base_url"] + filename
            try:
                _download(url, Path(tmp) / filename, info["sha256"])
            except (urllib.error.URLError, OSError) as e:
                raise ModelError(f"cannot download {url} ({getattr(e, 'reason', e)}).\n"
                                 + _missing_message(name, root)) from None
            done += info["size"]
            if progress:
                progress(done, total)
        return install_model(name, tmp, root)


def install_model(name: str, source: str | Path, model_dir: str | Path | None = None, progress=None) -> Path:
    """Import an upstream model from ``source`` into the model directory (``datagen models import``)."""
    root = default_model_dir(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    if name == "ict-facekit":
        return save_model(import_ict_facekit(source, progress=progress), root / name)
    if name == "sfm":
        load_sfm(source)  # validates the files through eos before anything is copied
        target = root / "sfm"
        with atomic_directory(target) as tmp:
            for filename in registry()["sfm"]["files"]:
                if (Path(source) / filename).exists():
                    shutil.copy2(Path(source) / filename, tmp / filename)
        return target
    raise ModelError(f"unknown model '{name}': use one of {', '.join(KNOWN_MODELS)}")


def _download(url: str, dest: Path, sha256: str) -> None:
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            h.update(block)
            out.write(block)
    if h.hexdigest() != sha256:
        dest.unlink()
        raise ModelError(f"{url}: checksum mismatch (got {h.hexdigest()[:12]}…, expected {sha256[:12]}…); "
                         f"the upstream file changed or the download was corrupted")


def _missing_message(name: str, root: Path) -> str:
    entry = registry()[name]
    if name == "ict-facekit":
        return (f"Model 'ict-facekit' is not installed in {root}. Get the FaceXModel/ folder of "
                f"{entry['homepage']} (licence: {entry['licence']}) and run:\n"
                f"  datagen models import ict-facekit PATH/TO/FaceXModel --model-dir {root}")
    files = ", ".join(entry["files"])
    return (f"Model 'sfm' is not installed in {root}. Get {files} from {entry['homepage']} (share/) "
            f"(licence: {entry['licence']}) into a folder and run:\n"
            f"  datagen models import sfm PATH/TO/FOLDER --model-dir {root}")
