"""The one record type shared by every source dataset, and its Hugging Face schema.

A loader turns a raw dataset tree into `Record`s; everything downstream (the HF builder, the build stages, the
trainer) reads records, never file names. Labels stay as the dataset writes them: relabelling pids and clothes to
0..N-1 is the trainer's job.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, get_type_hints

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


def unreadable(what: str, path: Path, err: Exception) -> str:
    """One-line skip reason for a file PIL could not read. The message names the file by its name only: reasons are
    published in the manifest, and PIL's text would carry the local absolute path."""
    message = str(err).splitlines()[0] if str(err) else ""
    for local in {str(path), str(Path(path).resolve())}:
        message = message.replace(local, Path(path).name)
    return f"unreadable {what}: {type(err).__name__}" + (f": {message}" if message else "")


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


# Hugging Face dtypes of the sample fields: the annotation of each `SampleMeta` field carries its dtype.
String = Annotated[str, "string"]
Int32 = Annotated[int, "int32"]
Int64 = Annotated[int, "int64"]
Float32 = Annotated[float | None, "float32"]  # null allowed
Float32List = Annotated[list[float], "list<float32>"]


@dataclass(frozen=True)
class SampleMeta:
    """The json member of every generated sample: these fields, in this order, in every sample of every build.

    The one declaration of the sample schema: `SAMPLE_SCHEMA` and `sample_features` are derived from it.
    """

    dataset: String
    split: String
    source_key: String
    pid: Int64
    camid: Int32
    source_clothes_id: String
    target_clothes_id: String
    target_text: String  # "top | bottom | shoes"
    prompt: String
    negative_prompt: String
    generator: String
    model: String  # "" for model-free generators
    seed: Int64  # the random seed of this variant's generation
    variant: Int32
    width: Int32
    height: Int32
    # Providers (DG-Net's terms): structure = the source person, always; appearance = the image whose garments
    # were transferred (clone, swap), "" / -1 when the outfit came from text (diffusion, recolor).
    structure_key: String
    structure_pid: Int64
    appearance_key: String
    appearance_pid: Int64
    # How the target outfit was chosen: "random" (DLCR) or "similar"/"diverse" (ClonedPerson's sampler), and the
    # target outfit's DBSCAN cluster (-1: noise, or no clustering).
    sampling: String
    cluster_id: Int32
    # CLIP3DReID body shape of the source person: scores over `vocab.body_shapes.BODY_SHAPE_WORDS` (empty when off).
    body_shape_method: String  # "clip:<model>", "geometry" or "" (off)
    body_shape_vocabulary: String  # "shapy-21" or ""
    body_shape_scores: Float32List
    body_shape_top: String  # the top words, comma-separated
    # Identity gate: the gate model and this sample's cosine to its identity prototype (train split) or to its
    # source image (query, gallery: no test label is used); null when not gated.
    gate_model: String
    gate_score: Float32

    def to_dict(self) -> dict:
        return asdict(self)


# field -> HF dtype, in field order (the card declares it; `shards.encode_sample` checks every sample against it).
SAMPLE_SCHEMA: dict[str, str] = {
    name: hint.__metadata__[0] for name, hint in get_type_hints(SampleMeta, include_extras=True).items()
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
