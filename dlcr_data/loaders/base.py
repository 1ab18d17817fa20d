"""What every source-dataset module provides: a layout, a filename rule, published statistics.

A dataset module (torchreid style) subclasses `SourceDataset`, declares its expected tree and statistics as class
attributes, and implements `scan(root)`: walk the tree, parse **basenames only**, yield a `Record` per item or a
`Skipped` with the reason. Where a path alone gives every label, `record_of(path)` is that rule, shared by `scan`
and by `import-release` (which reads DLCR's released strips, named after their originals, per `release_layout`).
`load()` adds what is common: root resolution, existence checks, key uniqueness and optional image verification.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from PIL import Image

from dlcr_data.errors import DatasetNotFound
from dlcr_data.files import DATA_ROOT_ENV, default_data_root
from dlcr_data.records import Record, Skipped, make_key, unreadable

if TYPE_CHECKING:
    import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class SplitStats:
    """Published statistics of one split; None where the source does not state it."""

    images: int | None = None  # tracklets for video datasets
    ids: int | None = None
    clothes: int | None = None
    cameras: int | None = None
    note: str = ""  # e.g. "unconfirmed"


@dataclass(frozen=True)
class ReleaseLayout:
    """Where DLCR's release (the Hub dataset `ihaveamoose/DLCR`, docs/dlcr-method.md §2.8) holds a dataset's
    training strips: its folders relative to the dataset folder, as in the original tree, and an example strip
    path for errors. `needs_root`: a path alone does not give the original's labels (no `record_of`), so the
    loader reads them from the original dataset under `--root`."""

    folders: tuple[str, ...]
    example: str
    needs_root: bool = False


@dataclass
class Loaded:
    """The splits of one dataset as lists of records, plus what was skipped and why."""

    name: str
    root: Path
    splits: dict[str, list[Record]]
    skipped: list[Skipped] = field(default_factory=list)

    def __getitem__(self, split: str) -> list[Record]:
        return self.splits[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def items(self) -> Iterable[tuple[str, list[Record]]]:
        return self.splits.items()

    def summary(self) -> dict:
        """Per-split counts (images = tracklets for video) and the skipped items, as `inspect --json` prints."""
        return {
            "dataset": self.name,
            "splits": {
                split: {
                    "images": len(recs),
                    "ids": len({r.pid for r in recs}),
                    "clothes": len({r.clothes_id for r in recs}),
                    "cameras": len({r.camid for r in recs}),
                }
                for split, recs in self.splits.items()
            },
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


class SourceDataset(ABC):
    """Base of the per-dataset modules."""

    name: ClassVar[str]  # registry name, e.g. "ltcc"
    dirname: ClassVar[str]  # folder name under the data root, e.g. "LTCC_ReID"
    splits: ClassVar[tuple[str, ...]]
    required: ClassVar[tuple[str, ...]]  # paths relative to the root that must exist
    layout: ClassVar[str]  # the expected tree, shown by `dlcr-data datasets` and in errors
    stats: ClassVar[dict[str, SplitStats]]
    video: ClassVar[bool] = False
    obtain: ClassVar[str] = ""  # how to get the (licence-gated) data
    citation: ClassVar[str] = ""
    # Traits the build reads instead of testing the dataset's name.
    licence_gated: ClassVar[bool] = True  # source images may not be redistributed (the card and hub say so)
    ships_masks: ClassVar[bool] = False  # parsing masks on disk: `mask_path(root, record)` (the `oracle` parser)
    ships_outfit_texts: ClassVar[bool] = False  # outfit texts on disk: `outfit_texts(root)` (the `oracle` describer)
    # Can redraw any of its images in any of its outfits: `outfit_renderer(root)` (the `render` generator).
    renders_outfits: ClassVar[bool] = False
    # Backends an "auto" build option resolves to: model-based by default, the shipped annotations where there are.
    default_backends: ClassVar[dict[str, str]] = {"parser": "segformer", "describer": "vlm", "generator": "diffusion"}
    # Where DLCR's release holds this dataset's training strips; None: it holds none (`import-release` refuses).
    release_layout: ClassVar[ReleaseLayout | None] = None

    # -- root handling -------------------------------------------------------------------------------------
    def resolve_root(self, root: str | os.PathLike | None = None) -> Path:
        """The dataset folder: `root` itself, or `root/<dirname>`; default `$DLCR_DATA_ROOT/<dirname>`."""
        if root is None:
            candidate = default_data_root() / self.dirname
            if not candidate.is_dir():
                raise DatasetNotFound(
                    f"{self.name}: no --root given and {candidate} does not exist; {self.obtain} "
                    f"Then pass --root DIR or put it at {candidate} (set ${DATA_ROOT_ENV} to move the default)."
                )
            root = candidate
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetNotFound(f"{self.name}: root {root} does not exist; expected {self.tree_line()}")
        if not self._has_required(root) and self._has_required(root / self.dirname):
            root = root / self.dirname
        missing = [r for r in self.required if not (root / r).exists()]
        if missing:
            raise DatasetNotFound(f"{self.name}: {root} is missing {', '.join(missing)}; expected {self.tree_line()}")
        return root

    def _has_required(self, root: Path) -> bool:
        return root.is_dir() and all((root / r).exists() for r in self.required)

    def mask_path(self, root: Path, record: Record) -> Path:
        """The parsing mask a dataset ships for `record` (`ships_masks`); `root` is the resolved root."""
        raise NotImplementedError(f"{self.name} ships no parsing masks")

    def outfit_texts(self, root: Path) -> dict[str, str]:
        """clothes_id -> "top | bottom | shoes", for a dataset that ships them (`ships_outfit_texts`)."""
        raise NotImplementedError(f"{self.name} ships no outfit texts")

    def outfit_renderer(self, root: Path) -> Callable[[str, str], np.ndarray]:
        """(image path relative to the resolved root, clothes id) -> that image redrawn wearing that outfit, RGB
        uint8 HxWx3 (`renders_outfits`)."""
        raise NotImplementedError(f"{self.name} cannot redraw its images")

    def tree_line(self) -> str:
        """The layout squeezed onto one line, for error messages."""
        return " ".join(line.strip() for line in self.layout.strip().splitlines())

    # -- loading -------------------------------------------------------------------------------------------
    @abstractmethod
    def scan(self, root: Path) -> Iterator[Record | Skipped]:
        """Yield every item of every split under the resolved root, in a deterministic (sorted) order."""

    def record_of(self, path: str) -> Record | Skipped:
        """The record of the image at `path` (POSIX, relative to the root) read from the path alone, or why not:
        a `layout:` reason for a path outside the tree, else the name rule's. Only for datasets whose paths give
        every label (`release_layout.needs_root` is False); LaST's running camera numbers and CCVID's list files
        need the whole tree."""
        raise NotImplementedError(f"{self.name}: a path alone does not give a record")

    def load(self, root: str | os.PathLike | None = None, *, verify_images: bool = False) -> Loaded:
        root = self.resolve_root(root)
        splits: dict[str, list[Record]] = {s: [] for s in self.splits}
        skipped: list[Skipped] = []
        seen: set[str] = set()
        for item in self.scan(root):
            if isinstance(item, Skipped):
                skipped.append(item)
            elif item.key in seen:
                skipped.append(Skipped(item.path, f"duplicate key {item.key}"))
            else:
                seen.add(item.key)
                splits[item.split].append(item)
        if verify_images:
            splits, bad = _drop_unreadable(root, splits)
            skipped.extend(bad)
        return Loaded(self.name, root, splits, skipped)


class FlatDataset(SourceDataset):
    """Flat split folders whose basenames give every label (LTCC, VC-Clothes, the demo)."""

    split_folders: ClassVar[dict[str, str]]  # split -> folder, in scan order
    name_pattern: ClassVar[str]  # the basename `parse_name` reads, for skip reasons

    @staticmethod
    def parse_name(basename: str) -> tuple[int, int, str] | None:
        """(pid, camid, clothes_id) from a basename; None if it does not match `name_pattern`."""
        raise NotImplementedError

    def scan(self, root: Path) -> Iterator[Record | Skipped]:
        for folder in self.split_folders.values():
            for path in list_images(root / folder):
                yield self.record_of(relpath(path, root))

    def record_of(self, path: str) -> Record | Skipped:
        """`<folder>/<name>`: the split from the folder, the labels from the name, the key from split and stem."""
        p = PurePosixPath(path)
        split = {folder: split for split, folder in self.split_folders.items()}.get(p.parts[0] if p.parts else "")
        if split is None or len(p.parts) != 2:
            folder = p.parts[0] if split is not None else "{" + ",".join(self.split_folders.values()) + "}"
            return Skipped(path, f"layout: expected {folder}/<name>")
        parsed = self.parse_name(p.name)
        if parsed is None:
            return Skipped(path, f"name does not match {self.name_pattern}")
        pid, camid, clothes_id = parsed
        return Record(make_key(split, p.stem), path, pid, camid, clothes_id, split)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def relpath(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _check_image(path: Path) -> str | None:
    """None if PIL can fully read the file, else the reason."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # PIL raises many types for broken files
        return unreadable("image", path, err)
    return None


def _drop_unreadable(root: Path, splits: dict[str, list[Record]]) -> tuple[dict[str, list[Record]], list[Skipped]]:
    """Decode every image (every frame for video); drop broken ones and list them."""
    files = sorted({f for recs in splits.values() for r in recs for f in (r.frames or (r.path,))})
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        reasons = dict(zip(files, pool.map(lambda f: _check_image(root / f), files), strict=True))
    skipped = [Skipped(f, reason) for f, reason in reasons.items() if reason]
    kept: dict[str, list[Record]] = {}
    for split, recs in splits.items():
        kept[split] = []
        for r in recs:
            if not r.frames:
                if not reasons[r.path]:
                    kept[split].append(r)
                continue
            good = tuple(f for f in r.frames if not reasons[f])
            if good:
                kept[split].append(_with_frames(r, good))
            else:
                skipped.append(Skipped(r.path, "tracklet has no readable frame"))
    return kept, skipped


def _with_frames(r: Record, frames: tuple[str, ...]) -> Record:
    if frames == r.frames:
        return r
    return Record(r.key, r.path, r.pid, r.camid, r.clothes_id, r.split, frames)
