"""Derive the MediaPipe face-mesh -> iBUG-68 correspondence used by datagen.photo.landmarks.

    DATAGEN_MODEL_DIR=... python scripts/derive_mediapipe_to_ibug.py [--samples 300]

Renders near-frontal ICT-FaceKit faces (whose 68 landmarks are known exactly), runs MediaPipe's
face mesh on each, and for every iBUG point picks the mesh point that lies nearest to it most
consistently (median distance over the renders, in units of the inter-ocular distance). No
annotated photo is used, so the photos in ../shared stay an independent check. Prints the table
and each point's median error.
"""

import argparse
import dataclasses

import numpy as np

from datagen.run.generator import FaceGenerator
from datagen.models.registry import resolve_model
from datagen.spec import load_default_spec, parse_spec


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    import mediapipe as mp

    text = load_default_spec().source_text.replace("yaw_range_deg = [-90.0, 90.0]", "yaw_range_deg = [-25.0, 25.0]")
    text += "\n[render]\n" if "[render]" not in text else ""
    spec = parse_spec(text.replace("width = 224", "width = 384").replace("height = 224", "height = 384"), "<derive>")
    spec = dataclasses.replace(spec, sampling=dataclasses.replace(
        spec.sampling, pose=dataclasses.replace(spec.sampling.pose, pitch_range_deg=(-15.0, 15.0))))
    generator = FaceGenerator(spec, resolve_model("ict-facekit"))
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
    distances = []
    for start in range(0, args.samples, 16):
        arrays = generator.generate(range(start, min(start + 16, args.samples)))
        for image, truth in zip(arrays["image"], arrays["landmarks_2d"]):
            found = mesh.process(image).multi_face_landmarks
            if not found:
                continue
            points = np.array([(p.x, p.y) for p in found[0].landmark]) * image.shape[1::-1]
            iod = np.linalg.norm(truth[36] - truth[45])
            distances.append(np.linalg.norm(truth[:, None] - points[None], axis=-1) / iod)
    distances = np.stack(distances)  # (renders, 68, 468)
    median = np.median(distances, axis=0)
    table = median.argmin(axis=1)
    print(f"{len(distances)} of {args.samples} renders detected")
    print("MEDIAPIPE_TO_IBUG = (" + ", ".join(str(int(i)) for i in table) + ")")
    print("median error per point (IOD):", np.round(median[np.arange(68), table], 3).tolist())


if __name__ == "__main__":
    main()
