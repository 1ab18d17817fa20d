"""The one record type shared by every source dataset, and its Hugging Face schema.

A loader turns a raw dataset tree into `Record`s; everything downstream (the HF builder, the build stages, the
trainer) reads records, never file names. Labels stay as the dataset writes them: relabelling pids and clothes to
0..N-1 is the trainer's job.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Record:
    """One source image (or one video tracklet) of a CC-ReID dataset."""

    key: str  # unique within the dataset; no dots, so it is a valid WebDataset sample key
    path: str  # POSIX path relative to the dataset root (the tracklet folder for video)
    pid: int  # identity as written by the dataset (not relabelled)
    camid: int  # 0-based camera index
    clothes_id: str  # outfit key, unique across the whole dataset, e.g. "140_2"
    split: str
    frames: tuple[str, ...] = ()  # video only: ordered frame paths relative to the root

    @property
    def image_path(self) -> str:
        """The one image that stands for this record: itself, or a tracklet's first frame."""
        return self.frames[0] if self.frames else self.path

    def to_dict(self) -> dict:
        out = asdict(self)
        out["frames"] = list(self.frames)
        return out


@dataclass(frozen=True, slots=True)
class Skipped:
    """A source item left out, with the reason (shown by `inspect`, kept in build manifests)."""

    path: str
    reason: str


def make_key(*parts: object) -> str:
    """Join parts into a sample key: `_` between parts, anything but [A-Za-z0-9_-] replaced by `-`."""
    return "_".join(_UNSAFE_KEY_CHARS.sub("-", str(p)).strip("-") for p in parts)


def source_features():
    """The HF schema of a source record (`datasets` imported here: it costs ~1 s, the CLI should not pay it)."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),  # the image; for video, the tracklet's first frame
            "key": datasets.Value("string"),
            "path": datasets.Value("string"),
            "pid": datasets.Value("int64"),
            "camid": datasets.Value("int32"),
            "clothes_id": datasets.Value("string"),
            "split": datasets.Value("string"),
            "frames": datasets.List(datasets.Value("string")),
        }
    )


# The json member of every generated sample: the same fields, in this order, in every sample of every build.
SAMPLE_SCHEMA: dict[str, str] = {
    "dataset": "string",
    "split": "string",
    "source_key": "string",
    "pid": "int64",
    "camid": "int32",
    "source_clothes_id": "string",
    "target_clothes_id": "string",
    "target_text": "string",  # "top | bottom | shoes"
    "prompt": "string",
    "negative_prompt": "string",
    "generator": "string",
    "model": "string",  # "" for model-free generators
    "seed": "int64",
    "variant": "int32",
    "width": "int32",
    "height": "int32",
    # Providers (DG-Net's terms): structure = the source person, always; appearance = the image whose garments
    # were transferred (clone, swap), "" / -1 when the outfit came from text (diffusion, recolor).
    "structure_key": "string",
    "structure_pid": "int64",
    "appearance_key": "string",
    "appearance_pid": "int64",
    # How the target outfit was chosen: "random" (DLCR) or "similar"/"diverse" (ClonedPerson's sampler), and the
    # target outfit's DBSCAN cluster (-1: noise, or no clustering).
    "sampling": "string",
    "cluster_id": "int32",
    # CLIP3DReID body shape of the source person: scores over `body_shape.BODY_SHAPE_WORDS` (empty when off).
    "body_shape_method": "string",  # "clip:<model>", "geometry" or "" (off)
    "body_shape_vocabulary": "string",  # "shapy-21" or ""
    "body_shape_scores": "list<float32>",
    "body_shape_top": "string",  # the top words, comma-separated
    # Identity gate: the gate model and this sample's cosine to its identity prototype (null when not gated).
    "gate_model": "string",
    "gate_score": "float32",
}


def sample_features(image_format: str = "png"):
    """The HF schema of a generated sample as `datasets`' webdataset builder yields it (declared in the card, so
    no field is guessed from the first samples or dropped)."""
    import datasets

    return datasets.Features(
        {
            "__key__": datasets.Value("string"),
            "__url__": datasets.Value("string"),
            image_format: datasets.Image(),
            "mask.png": datasets.Image(),
            "json": {name: _feature(dtype) for name, dtype in SAMPLE_SCHEMA.items()},
        }
    )


def _feature(dtype: str):
    import datasets

    if dtype.startswith("list<"):
        return datasets.List(datasets.Value(dtype.removeprefix("list<").removesuffix(">")))
    return datasets.Value(dtype)
