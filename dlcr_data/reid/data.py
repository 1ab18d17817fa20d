"""Training data: relabelled originals (+ DLCR variants) as one item table, decoded where the DataLoader runs.

`TrainSet` is one flat table of items: the real training images first (items 0..R-1), then the generated
variants (R..). An item decodes to a uint8 (3, H, W) tensor at the training size, or (T, 3, H, W) for a video clip
(`seq_len` > 1: CAL's clip recipe for CCVID). Decoding runs in the DataLoader's workers, so memory does not grow
with the dataset; `cache` keeps decoded pixels in memory instead, for sets that fit `CACHE_BUDGET` (the demo).
Augmentation runs on whole batches on the training device (`augment.py`). Which items form a batch is
`sampler.py`'s: a variant carries its source's identity label; its clothes label is -1, and the clothes losses
(CAL) use the real half of a paired batch only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dlcr_data import loaders
from dlcr_data.errors import UserError
from dlcr_data.expanded import load_expanded
from dlcr_data.records import Record
from dlcr_data.reid.augment import IMAGENET_MEAN, IMAGENET_STD, normalize  # noqa: F401  (re-exported)
from dlcr_data.reid.config import CACHE_MODES


# -- labels -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelMaps:
    """Raw training pids and clothes keys, sorted: label i = pids[i] (CAL's convention, deterministic)."""

    pids: tuple[int, ...]
    clothes: tuple[str, ...]

    @classmethod
    def from_records(cls, records: Sequence[Record]) -> LabelMaps:
        return cls(tuple(sorted({r.pid for r in records})), tuple(sorted({r.clothes_id for r in records})))

    def pid_label(self) -> dict[int, int]:
        return {pid: i for i, pid in enumerate(self.pids)}

    def clothes_label(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.clothes)}

    def to_dict(self) -> dict:
        return {"pids": list(self.pids), "clothes": list(self.clothes)}


def pid2clothes(records: Sequence[Record], maps: LabelMaps) -> torch.Tensor:
    """Binary (num_pids, num_clothes) matrix: 1 where the identity wears the outfit in the training set."""
    matrix = torch.zeros(len(maps.pids), len(maps.clothes))
    pid_label, clothes_label = maps.pid_label(), maps.clothes_label()
    for r in records:
        matrix[pid_label[r.pid], clothes_label[r.clothes_id]] = 1.0
    return matrix


# -- images and transforms --------------------------------------------------------------------------------------
def to_uint8(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """RGB, resized (bilinear, aspect ignored, as CAL) to (H, W): a uint8 (3, H, W) tensor."""
    height, width = size
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def load_uint8(path: str | os.PathLike, size: tuple[int, int]) -> torch.Tensor:
    with Image.open(path) as im:
        return to_uint8(im, size)


# -- the training table -----------------------------------------------------------------------------------------
CACHE_BUDGET = 2 * 1024**3  # `cache="auto"` keeps decoded pixels in memory when they take at most this many bytes


def temporal_crop(num_frames: int, seq_len: int, stride: int, rng: np.random.Generator) -> list[int]:
    """CAL's training clip (Simple-CCReID `data/temporal_transforms.py::TemporalRandomCrop`), frame indices:

    - at least seq_len * stride frames: seq_len frames `stride` apart from a start uniform in
      [0, num_frames - (seq_len - 1) * stride - 1];
    - at least seq_len: the frames cut into seq_len equal segments (of num_frames // seq_len, the rest unused),
      one frame drawn from each;
    - fewer: seq_len indices drawn with replacement, sorted.
    """
    if num_frames >= seq_len * stride:
        begin = int(rng.integers(0, num_frames - (seq_len - 1) * stride))
        return list(range(begin, begin + (seq_len - 1) * stride + 1, stride))
    if num_frames >= seq_len:
        segment = num_frames // seq_len
        return [segment * i + int(rng.integers(0, segment)) for i in range(seq_len)]
    return sorted(int(i) for i in rng.choice(num_frames, seq_len, replace=True))


def dense_pieces(num_frames: int, step: int) -> list[tuple[int, int]]:
    """CAL's dense sampling of a training video (`data/datasets/ccvid.py::_densesampling_for_trainingset`): pieces
    of `step` frames, the last one taking the rest (step to 2 * step - 1 frames); a shorter video stays whole."""
    count = num_frames // step if step else 0
    if count == 0:
        return [(0, num_frames)]
    return [(i * step, (i + 1) * step if i < count - 1 else num_frames) for i in range(count)]


class TrainSet(torch.utils.data.Dataset):
    """Real training images (relabelled) and, optionally, their generated variants, as one item table.

    Per item: `keys` (record key, or the variant's sample key), `sources` (the source record key), `pids` (label),
    `clothes` (label; -1 for variants), `variant` (-1 for reals). `partners[i]`: item ids of real item i's
    variants, in variant order. `__getitem__((i, key))` → (uint8 (3, H, W), i, key), or ((T, 3, H, W), i, key)
    with `seq_len` = T > 1: a real video record is one item per `dense_pieces` piece, each drawing a
    `temporal_crop` of its frames (seeded by (seed, epoch, draw key)); a variant, generated from one frame, is a
    still clip (the frame T times), the partner of every piece of its source.
    """

    def __init__(
        self,
        records: Sequence[Record],
        root: str | os.PathLike,
        image_size: tuple[int, int],
        expanded=None,  # dlcr_data.expanded.Expanded
        *,
        cache: str = "auto",
        seq_len: int = 1,
        stride: int = 4,
        dense_step: int = 64,
        seed: int = 0,
    ) -> None:
        if not records:
            raise UserError("the training split is empty")
        if cache not in CACHE_MODES:
            raise UserError(f"--cache must be one of {', '.join(CACHE_MODES)}, not {cache!r}")
        self.root, self.image_size = Path(root), tuple(image_size)
        self.seq_len, self.stride, self.seed, self.epoch = seq_len, stride, seed, 0
        self.maps = LabelMaps.from_records(records)
        pid_label, clothes_label = self.maps.pid_label(), self.maps.clothes_label()
        self.pid2clothes = pid2clothes(records, self.maps)
        # one real item per image, or per dense piece of a video (clips): (record, first frame, end frame)
        self.items: list[tuple[Record, int, int]] = []
        for r in records:
            pieces = dense_pieces(len(r.frames), dense_step) if seq_len > 1 and r.frames else [(0, len(r.frames))]
            self.items += [(r, start, end) for start, end in pieces]
        self.records = [r for r, _, _ in self.items]
        self.keys = [
            r.key if (start, end) == (0, len(r.frames)) else f"{r.key}#{start}" for r, start, end in self.items
        ]
        self.sources = [r.key for r in self.records]
        pids = [pid_label[r.pid] for r in self.records]
        clothes = [clothes_label[r.clothes_id] for r in self.records]
        variant = [-1] * len(self.records)
        self.partners: list[list[int]] = [[] for _ in self.records]
        self.variant_rows: list[int] = []  # item id - num_real -> row of the expanded dataset
        self.unmatched_variants = 0  # variants whose source is not among `records`
        self._variants, self._column = None, "png"
        if expanded is not None:
            column = expanded.image_column
            self._variants, self._column = expanded.dataset.select_columns([column]), column  # not the mask
            real_of: dict[str, list[int]] = {}  # source key -> its real items (a video's pieces share variants)
            for i, key in enumerate(self.sources):
                real_of.setdefault(key, []).append(i)
            metas = expanded.metas
            for source_key, rows in sorted(expanded.index.items()):
                if source_key not in real_of:
                    self.unmatched_variants += len(rows)
                    continue
                reals = real_of[source_key]
                for row in rows:  # index rows are in variant order
                    meta = metas[row]
                    if meta["pid"] != self.records[reals[0]].pid:
                        raise UserError(f"variant of {source_key} has pid {meta['pid']}, its source has another")
                    for real in reals:
                        self.partners[real].append(len(self.keys))
                    self.keys.append(f"{source_key}_v{meta['variant']}")
                    self.sources.append(source_key)
                    pids.append(pids[reals[0]])
                    clothes.append(-1)  # generated images have no clothes label
                    variant.append(int(meta["variant"]))
                    self.variant_rows.append(row)
        self.num_real = len(self.records)
        self.pids = torch.tensor(pids)
        self.clothes = torch.tensor(clothes)
        self.variant = torch.tensor(variant)
        self.cache = self.cache_fits() if cache == "auto" else cache == "on"
        if self.cache and seq_len > 1:
            raise UserError("--cache on keeps one decoded image per item; video clips (seq_len > 1) are drawn anew")
        self._cached = torch.zeros(len(self.keys), dtype=torch.bool)
        self._store: torch.Tensor | None = None  # allocated on first use; pages are touched only when filled

    @classmethod
    def from_dataset(
        cls,
        dataset: str,
        root: str | os.PathLike | None,
        image_size: tuple[int, int],
        expanded: str | os.PathLike | None = None,
        **options,
    ) -> TrainSet:
        """Originals through `loaders.load(dataset, root)["train"]`; variants through `load_expanded`; `options`
        are `TrainSet`'s keywords (cache, seq_len, stride, dense_step, seed).

        With seq_len 1, video records train on the frame the build expands (`Record.image_path`, the first)."""
        loaded = loaders.load(dataset, root)
        if "train" not in loaded.splits:
            raise UserError(f"{dataset} has no train split")
        variants = load_expanded(expanded, dataset, split="train") if expanded is not None else None
        return cls(loaded["train"], loaded.root, image_size, variants, **options)

    @property
    def num_pids(self) -> int:
        return len(self.maps.pids)

    @property
    def num_clothes(self) -> int:
        return len(self.maps.clothes)

    @property
    def has_variants(self) -> bool:
        return len(self.keys) > self.num_real

    def cache_bytes(self) -> int:
        """What caching every item's decoded pixels takes."""
        return len(self.keys) * 3 * self.image_size[0] * self.image_size[1] * self.seq_len

    def cache_fits(self) -> bool:
        return self.seq_len == 1 and self.cache_bytes() <= CACHE_BUDGET

    def set_epoch(self, epoch: int) -> None:
        """Clips are drawn per (seed, epoch, draw key); set before the epoch's DataLoader workers start."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

    def _decode(self, item: int, key: int) -> torch.Tensor:
        if item >= self.num_real:
            image = to_uint8(self._variants[self.variant_rows[item - self.num_real]][self._column], self.image_size)
            return image.expand(self.seq_len, *image.shape) if self.seq_len > 1 else image
        record, start, end = self.items[item]
        if self.seq_len == 1 or not record.frames:
            image = load_uint8(self.root / record.image_path, self.image_size)
            return image.expand(self.seq_len, *image.shape) if self.seq_len > 1 else image
        rng = np.random.default_rng([self.seed, self.epoch, key])
        frames = [start + i for i in temporal_crop(end - start, self.seq_len, self.stride, rng)]
        return torch.stack([load_uint8(self.root / record.frames[i], self.image_size) for i in frames])

    def __getitem__(self, draw: tuple[int, int] | int) -> tuple[torch.Tensor, int, int]:
        """A sampler's (item, draw key) (or a bare item, key 0) -> (pixels, item, key)."""
        item, key = draw if isinstance(draw, tuple) else (draw, 0)
        if not self.cache:
            return self._decode(item, key), item, key
        if self._store is None:
            self._store = torch.empty(len(self.keys), 3, *self.image_size, dtype=torch.uint8)
        if not self._cached[item]:  # decode once; later epochs read the cached pixels
            self._store[item] = self._decode(item, key)
            self._cached[item] = True
        return self._store[item], item, key


def real_mask(batch_size: int, paired: bool, device: torch.device | str = "cpu") -> torch.Tensor:
    """Which images of a batch are real (they get CAL's clothes losses): the first half of a paired batch, else all."""
    return torch.arange(batch_size, device=device) < (batch_size // 2 if paired else batch_size)
