"""Photo -> 3D face: detect, crop as in training, CoarseNet, a model fit to its dense points, mesh files
and an overlay picture.

The crop matches the training crops (``data.face_crop_box``: square, around the landmarks' box).
A photo's camera is unknown: its focal length is taken as that of the middle of the training
prior, a 26-degree vertical field of view in which the landmarks (chin to brows) fill half the
height, and its principal point as the crop's centre.
Meshes are written in the crop's camera space (mm; OpenGL axes, see the README), so that they
overlay the crop; OBJ carries the model's UVs, PLY the vertices and faces.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import DatagenError
from ..files import write_text_or_fail
from ..camera import project, to_camera
from ..synth.geometry import build_scenes
from ..data.meshes import MESH_SUFFIXES, write_mesh
from ..models.registry import resolve_model
from ..images import crop_photo
from ..photo.library import neutral_appearance
from ..synth.render import Renderer
from ..synth.sampling import FaceParams
from ..spec import CameraPrior
from .data import face_crop_box, network_input
from .network import CoarseNet, FaceDecoder
from .refine import final_parameters
from .training import dense_vertex_ids

# A photo's assumed camera: the middle of the default camera prior (26 degrees, half the height)
FIELD_OF_VIEW = np.radians(np.mean(CameraPrior.fov_deg))
FACE_FRACTION = float(np.mean(CameraPrior.face_fraction))  # landmark height / image height


@dataclass
class Reconstruction:
    params: FaceParams  # in the crop's camera
    vertices: np.ndarray  # (V, 3) mm, crop camera space
    landmarks: np.ndarray  # (68, 2) in the photo's pixels
    crop: np.ndarray  # (S, S, 3) uint8
    box: tuple  # (x0, y0, side) of the crop in the photo


def assumed_crop_intrinsics(landmarks: np.ndarray, box, size: int) -> np.ndarray:
    """(fx, fy, cx, cy) of a photo's crop, in crop pixels, under the assumed camera (module docstring)."""
    focal = float(np.ptp(landmarks[:, 1])) / (2 * FACE_FRACTION * np.tan(FIELD_OF_VIEW / 2)) * size / box[2]
    return np.array([focal, focal, size / 2, size / 2], np.float32)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's state (``training.Trainer.save``), or one clear error."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise DatagenError(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(state, dict) or "config" not in state or "net" not in state:
        raise DatagenError(f"{path}: not a datagen checkpoint (no config and network)")
    return state


class Reconstructor:
    """CoarseNet and its fit: photo crop -> parameters -> mesh. A FineNet or tracker checkpoint carries
    the CoarseNet it was trained on, and serves as one too."""

    def __init__(self, checkpoint: str | Path, model_dir: str | None = None, device: str | None = None,
                 state: dict | None = None):
        path = Path(checkpoint)
        state = load_checkpoint(path) if state is None else state
        self.kind = state.get("kind", "coarse")  # "fine" or "tracker": a FineNet's or tracker's checkpoint, whose CoarseNet this is
        if self.kind in ("fine", "tracker"):
            state = state["coarse"]
        self.config = state["config"]
        model_name = state["model"].get("job_model") or state["model"]["name"]
        self.model = resolve_model(model_name, model_dir)
        self.size = self.config["size"]
        point_ids = dense_vertex_ids(self.model, self.config.get("points", 0))
        self.net = CoarseNet(self.model.num_identity, self.model.num_expression, self.config["width"],
                             point_ids=point_ids)
        try:
            self.net.load_state_dict(state["net"])
        except RuntimeError as e:  # the weights do not fit the network its config and model describe
            raise DatagenError(f"{path}: its network does not match its config and model {model_name!r} "
                               f"({str(e).splitlines()[0]})") from None
        self.net.eval()
        self.point_decoder = FaceDecoder(self.model, point_ids) if len(point_ids) else None
        self._renderer = None

    @torch.no_grad()
    def predict(self, images: np.ndarray, intrinsics: np.ndarray) -> list[FaceParams]:
        """Parameters of (B, S, S, 3) uint8 crops (S = the network's input size) with the crops'
        (B, 4) or (4,) intrinsics."""
        x = torch.from_numpy(network_input(images))
        intrinsics = np.array(np.broadcast_to(intrinsics, (len(images), 4)), np.float32)
        predicted = self.net(x)
        fitted = final_parameters(predicted, torch.from_numpy(intrinsics), self.size, self.point_decoder)
        p = {k: v.numpy() for k, v in {**predicted, **fitted}.items()}
        return [FaceParams(sample_index=-1, identity=p["identity"][i], expression=p["expression"][i],
                           rotation=p["rotation"][i], translation=p["translation"][i], intrinsics=intrinsics[i],
                           light_sh=p["light"][i].reshape(9, 3), appearance=neutral_appearance(),
                           background=np.array([0, -1], np.int64)) for i in range(len(images))]

    def camera_vertices(self, params: FaceParams) -> np.ndarray:
        vertices = self.model.vertices(params.identity, params.expression)
        return to_camera(vertices, self.model.pivot, params.rotation, params.translation).astype(np.float32)

    def reconstruct(self, image: np.ndarray, landmarks: np.ndarray) -> Reconstruction:
        """One face of an (H, W, 3) photo, cropped around ``landmarks`` (68, 2) (detected or annotated)."""
        box = face_crop_box(landmarks)
        crop = crop_photo(image, box, self.size)
        params = self.predict(crop[None], assumed_crop_intrinsics(landmarks, box, self.size))[0]
        vertices = self.camera_vertices(params)
        fitted = project(vertices[self.model.landmark_ids][None], params.intrinsics[None])[0]
        return Reconstruction(params, vertices, fitted * box[2] / self.size + box[:2], crop, box)

    def overlay(self, result: Reconstruction, opacity: float = 0.6) -> Image.Image:
        """The crop with the reconstructed mesh (shaded, semi-transparent) and its landmarks."""
        if self._renderer is None:
            self._renderer = Renderer(self.model, self.size, self.size, supersample=2)
        p = result.params
        light = np.zeros((9, 3), np.float32)
        light[0], light[2] = 2.2, 1.0  # ambient + a light from the camera
        shaded = dataclasses.replace(p, light_sh=light)
        colour = self._renderer.render(build_scenes(self.model, [shaded], topology=self._renderer.topology)).colour[0]
        alpha = colour[..., 3:].astype(np.float32) / 255 * opacity
        mixed = result.crop * (1 - alpha) + colour[..., :3] * alpha
        picture = Image.fromarray(mixed.astype(np.uint8)).resize((2 * self.size, 2 * self.size))
        draw = ImageDraw.Draw(picture)
        k = 2 * self.size / result.box[2]
        for x, y in (result.landmarks - result.box[:2]) * k:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill="lime")
        return picture


def write_params(path: str | Path, result: Reconstruction) -> None:
    p = result.params
    write_text_or_fail(path, json.dumps({
        "identity": p.identity.tolist(), "expression": p.expression.tolist(), "rotation": p.rotation.tolist(),
        "translation": p.translation.tolist(), "intrinsics_of_crop": p.intrinsics.tolist(),
        "light_sh": p.light_sh.tolist(), "crop_box": list(map(float, result.box)),
        "landmarks": result.landmarks.tolist()}, indent=1), "parameters")


@dataclass(frozen=True)
class PhotoReconstruction:
    """One face of ``reconstruct_photos``: where its files went, or why the photo was skipped."""

    photo: Path
    mesh: Path | None = None
    result: Reconstruction | None = None
    landmark_source: str = ""
    faces_found: int = 0
    skipped: str = ""
    fine: object = None  # fine_inference.FineReconstruction, with ``detail``


def reconstruct_photos(photos, reconstructor: Reconstructor, output: str | Path | None = None,
                       landmarks: str | Path | None = None, all_faces: bool = False, detail=None):
    """Reconstruct the faces of ``photos`` (files or folders; ``datagen reconstruct``): for each face
    a mesh (.obj with UVs, or .ply), its parameters (.json) and an overlay (.png), yielding a
    ``PhotoReconstruction`` per face written (or per photo skipped). With ``detail`` (a
    ``fine_inference.FineReconstructor``) the mesh is the detailed one, and ``<name>-detail.png``
    shows its normals.

    ``output``: a mesh file for one photo; else a folder (default: beside each photo), with
    ``<photo>.obj`` for its largest face and, with ``all_faces``, ``<photo>-1.obj``, ... for the others.
    """
    from ..photo.fitter import photo_files, read_photo
    from ..photo.landmarks import LandmarkError, photo_faces

    files = photo_files(photos)
    output = Path(output) if output is not None else None
    single = len(files) == 1 and output is not None and output.suffix.lower() in MESH_SUFFIXES
    for photo in files:
        try:
            image = read_photo(photo)
            faces, source = photo_faces(photo, image, Path(landmarks) if landmarks and len(files) == 1 else None)
        except (LandmarkError, DatagenError) as e:
            yield PhotoReconstruction(photo, skipped=str(e))
            continue
        first = output if single else (output or photo.parent) / f"{photo.stem}.obj"
        for k, points in enumerate(faces if all_faces else faces[:1]):
            result = reconstructor.reconstruct(image, points)
            mesh = first if k == 0 else first.with_name(f"{first.stem}-{k}{first.suffix}")
            fine = detail.refine(image, result) if detail is not None else None
            if fine is None:
                write_mesh(mesh, result.vertices, reconstructor.model, comment="datagen reconstruction")
            else:
                write_mesh(mesh, fine.vertices, reconstructor.model, "datagen detailed reconstruction", fine.triangles,
                           fine.uv, fine.triangle_uv)
                detail.picture(fine).save(mesh.with_name(mesh.stem + "-detail.png"))
            write_params(mesh.with_suffix(".json"), result)
            reconstructor.overlay(result).save(mesh.with_name(mesh.stem + "-overlay.png"))
            yield PhotoReconstruction(photo, mesh, result, source, len(faces), fine=fine)
