"""The README's fine-detail pictures (docs/detail.jpg, docs/detail-photoreal.jpg).

    python scripts/detail_pictures.py --library textures/mylib [--donor einstein] [--out docs]

detail.jpg: per identity of jobs/details.toml (at 384 px), its image, then under a raking light its face
with no detail, with procedural detail (pores, lines, creases of its expression), with the donor
photo's detail transferred onto it (from --library, fitted by `datagen fit`), and its fine normals.
detail-photoreal.jpg: photo-realistic samples of --library's photos (jobs/photoreal.toml, 320 px), under
their sampled light and under a light from the side: without detail, with their wrinkles (the photo's
own detail and the creases of the new expression, shaded under that light), and the difference
(x4, grey = none).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from datagen.models.registry import resolve_model
from datagen.photo.library import TextureLibrary
from datagen.run.generator import FaceGenerator
from datagen.spec import load_spec, with_overrides
from datagen.synth.detail import NO_DETAIL, PHOTO
from datagen.synth.sampling import raking_light

REPO = Path(__file__).resolve().parents[1]


def labelled(rows: list[list[np.ndarray]], labels: list[str], gap: int = 4) -> Image.Image:
    h, w = rows[0][0].shape[:2]
    top = 18
    sheet = Image.new("RGB", (len(labels) * (w + gap) - gap, top + len(rows) * (h + gap) - gap), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((c * (w + gap) + 4, 3), label, fill="black")
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            sheet.paste(Image.fromarray(picture), (c * (w + gap), top + r * (h + gap)))
    return sheet


def normals_picture(normal: np.ndarray, covered: np.ndarray) -> np.ndarray:
    return np.where(covered[..., None], (normal.astype(np.float32) + 1) / 2 * 255, 255).astype(np.uint8)


def detail_sheet(model, library: Path, donor: str, count: int, size: int) -> Image.Image:
    spec = with_overrides(load_spec(REPO / "jobs" / "details.toml"), num_samples=count)
    detail = dataclasses.replace(spec.sampling.detail, donor_libraries=(str(library),), age=(0.7, 1.0))
    spec = dataclasses.replace(spec, render=dataclasses.replace(spec.render, width=size, height=size),
                               sampling=dataclasses.replace(spec.sampling, detail=detail))
    generator = FaceGenerator(spec, model)
    names = [e["name"] for e in TextureLibrary(library).index()["entries"]]
    k = names.index(donor)  # the donors' photos follow the job's own (none here)
    rows = []
    for i in range(count):
        p = generator.sample_params(i)
        lit = dataclasses.replace(p, light_sh=raking_light(), capture=None)
        transferred = dataclasses.replace(p.detail, source=PHOTO, photo=k, procedural_weight=0.0, photo_weight=1.0)
        variants = [p, dataclasses.replace(lit, detail=NO_DETAIL), lit, dataclasses.replace(lit, detail=transferred)]
        arrays = generator.render_params(variants)
        rows.append(list(arrays["image"]) + [normals_picture(arrays["normal_fine"][2], arrays["depth"][2] > 0)])
    return labelled(rows, ["the sample", "raking light: no detail", "procedural detail", f"{donor}'s detail",
                           "fine normals (procedural)"])


def photoreal_sheet(model, library: Path, count: int, size: int) -> Image.Image:
    spec = with_overrides(load_spec(REPO / "jobs" / "photoreal.toml"), num_samples=count)
    spec = dataclasses.replace(spec, photoreal=dataclasses.replace(spec.photoreal, library=str(library)),
                               render=dataclasses.replace(spec.render, width=size, height=size))
    generator = FaceGenerator(spec, model)
    rows, seen = [], set()
    for i in range(40):
        p = generator.sample_params(i)
        if int(p.background[1]) in seen:
            continue
        seen.add(int(p.background[1]))
        side = dataclasses.replace(p, light_sh=(0.5 * p.light_sh + 0.5 * raking_light()).astype(np.float32))
        variants = [dataclasses.replace(p, detail=NO_DETAIL), p, dataclasses.replace(side, detail=NO_DETAIL), side]
        images = generator.render_params(variants)["image"]
        difference = np.clip(128 + 4 * (images[3].astype(np.float32) - images[2]), 0, 255).astype(np.uint8)
        rows.append(list(images) + [difference])
        if len(rows) == count:
            break
    return labelled(rows, ["photo-realistic, no detail", "with its wrinkles", "side light, no detail",
                           "side light, with its wrinkles", "difference x4"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", required=True, type=Path)
    parser.add_argument("--donor", default="einstein")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    model = resolve_model("ict-facekit", args.model_dir)
    detail_sheet(model, args.library, args.donor, 3, 320).save(args.out / "detail.jpg", quality=88)
    photoreal_sheet(model, args.library, 3, 320).save(args.out / "detail-photoreal.jpg", quality=90)
    print(f"wrote {args.out / 'detail.jpg'} and {args.out / 'detail-photoreal.jpg'}")


if __name__ == "__main__":
    main()
