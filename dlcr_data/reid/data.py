"""Training data: relabelled originals (+ DLCR variants), DLCR pairing with progressive learning, transforms.

`TrainSet` is one flat table of items: the real training images first (items 0..R-1), then the generated
variants (R..). Items decode to uint8 (3, H, W) tensors at the training size (cached in memory on request);
augmentation runs on whole batches (`augment`), on the training device, from a seeded generator.

**DLCR pairing** (docs/dlcr-method.md §3.1): `PairedBatchSampler` turns each identity-balanced batch of B real items
into 2B items: the B reals, then one variant *of the same source image* per real, in the same order. A variant
carries its source's identity label; its clothes label is -1, and the clothes losses (CAL) use the first half of
the batch only. A source without variants (skipped by the build, or outside a `--limit`ed build) is paired with
itself: the same image again, augmented differently, so every batch keeps its real/partner halves.

**Progressive learning** (§3.2): at epoch e (0-based) a partner is drawn uniformly from the first ⌊V·p⌋ of the
source's V variants (at least 1), p = fractions[i] for the first threshold with e ≤ thresholds[i], all V after
the last threshold. DLCR: thresholds (5, 10, 15), fractions (0.25, 0.5, 0.75) → 2, 5, 7, 10 of 10 variants.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dlcr_data import loaders
from dlcr_data.errors import UserError
from dlcr_data.expanded import load_expanded
from dlcr_data.records import Record
from dlcr_data.reid.sampler import IdentitySampler

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- progressive schedule ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProgressiveSchedule:
    thresholds: tuple[int, ...] = (5, 10, 15)
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75)

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.fractions):
            raise UserError("progressive thresholds and fractions must have the same length")
        if list(self.thresholds) != sorted(self.thresholds) or not all(0 < f <= 1 for f in self.fractions):
            raise UserError("progressive thresholds must be increasing and fractions in (0, 1]")

    def fraction(self, epoch: int) -> float:
        """The share of each source's variants a partner may come from at `epoch` (0-based)."""
        for threshold, fraction in zip(self.thresholds, self.fractions, strict=True):
            if epoch <= threshold:
                return fraction
        return 1.0

    def pool_size(self, epoch: int, num_variants: int) -> int:
        """How many of a source's first variants are allowed: ⌊V·p⌋, at least 1 (0 when it has none)."""
        if num_variants <= 0:
            return 0
        return max(1, min(num_variants, math.floor(num_variants * self.fraction(epoch) + 1e-9)))

    def scaled(self, factor: float) -> ProgressiveSchedule:
        """Thresholds for a run `factor` times as long as the one they were written for (rounded)."""
        return ProgressiveSchedule(tuple(scale_epoch(t, factor) for t in self.thresholds), self.fractions)


def scale_epoch(epoch: int, factor: float) -> int:
    return max(0, round(epoch * factor))


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


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) → float, ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


@dataclass(frozen=True)
class AugmentConfig:
    flip_p: float = 0.5
    pad: int = 10  # zero padding, then a random crop back to (H, W)
    erase_p: float = 0.5  # random erasing (Zhong et al.): area 2-40 %, aspect 0.3-3.3, filled with the mean
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_aspect: float = 0.3


def augment(images: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """Training transform of a uint8 batch: flip, zero-pad + random crop, normalise, random erasing.

    Every random number comes from `generator` (CPU), so a batch is augmented identically on any device. Flip,
    pad and crop are one gather on the uint8 pixels (a quarter of the float traffic; this runs every step)."""
    b, _, h, w = images.shape
    device, pad = images.device, cfg.pad
    flip = (torch.rand(b, generator=generator) < cfg.flip_p).to(device)
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(device)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(device)
    padded = torch.nn.functional.pad(images, (pad,) * 4) if pad else images  # black border, as T.Pad
    cols = left[:, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], w + 2 * pad - 1 - cols, cols)  # the crop of the flipped padded image
    rows = top[:, None] + torch.arange(h, device=device)
    index = (
        torch.arange(b, device=device)[:, None, None, None],
        torch.arange(3, device=device)[:, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    )
    x = padded[index].float()
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x.mul_(1.0 / (255.0 * std)).sub_(torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) / std)
    if cfg.erase_p:
        x.masked_fill_(erase_masks(b, h, w, generator, cfg).to(device), 0.0)  # 0 = the mean colour
    return x


def erase_masks(b: int, h: int, w: int, generator: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """(B, 1, H, W) bool: one random rectangle for each image erased with probability `erase_p`."""
    masks = torch.zeros(b, 1, h, w, dtype=torch.bool)
    for i in range(b):
        if torch.rand((), generator=generator) >= cfg.erase_p:
            continue
        for _ in range(100):  # as Zhong et al.: retry until the rectangle fits
            u = torch.rand(3, generator=generator).tolist()
            area = h * w * (cfg.erase_area[0] + u[0] * (cfg.erase_area[1] - cfg.erase_area[0]))
            aspect = math.exp(math.log(cfg.erase_aspect) + u[1] * (-2 * math.log(cfg.erase_aspect)))
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < eh < h and 0 < ew < w:
                top = int(torch.randint(0, h - eh + 1, (), generator=generator))
                left = int(torch.randint(0, w - ew + 1, (), generator=generator))
                masks[i, 0, top : top + eh, left : left + ew] = True
                break
    return masks


# -- the training table -----------------------------------------------------------------------------------------
class TrainSet(torch.utils.data.Dataset):
    """Real training images (relabelled) and, optionally, their generated variants, as one item table.

    Per item: `keys` (record key, or the variant's sample key), `sources` (the source record key), `pids` (label),
    `clothes` (label; -1 for variants), `variant` (-1 for reals). `partners[i]`: item ids of real item i's
    variants, in variant order. `__getitem__(i)` → (uint8 (3, H, W), i).
    """

    def __init__(
        self,
        records: Sequence[Record],
        root: str | os.PathLike,
        image_size: tuple[int, int],
        expanded=None,  # dlcr_data.expanded.Expanded
        *,
        cache: bool = True,
    ) -> None:
        if not records:
            raise UserError("the training split is empty")
        self.records, self.root, self.image_size = list(records), Path(root), tuple(image_size)
        self.maps = LabelMaps.from_records(self.records)
        pid_label, clothes_label = self.maps.pid_label(), self.maps.clothes_label()
        self.pid2clothes = pid2clothes(self.records, self.maps)
        self.keys = [r.key for r in self.records]
        self.sources = list(self.keys)
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
            real_of = {key: i for i, key in enumerate(self.keys)}
            metas = expanded.metas
            for source_key, rows in sorted(expanded.index.items()):
                if source_key not in real_of:
                    self.unmatched_variants += len(rows)
                    continue
                real = real_of[source_key]
                for row in rows:  # index rows are in variant order
                    meta = metas[row]
                    if meta["pid"] != self.records[real].pid:
                        raise UserError(f"variant of {source_key} has pid {meta['pid']}, its source has another")
                    self.partners[real].append(len(self.keys))
                    self.keys.append(f"{source_key}_v{meta['variant']}")
                    self.sources.append(source_key)
                    pids.append(pids[real])
                    clothes.append(-1)  # generated images have no clothes label
                    variant.append(int(meta["variant"]))
                    self.variant_rows.append(row)
        self.num_real = len(self.records)
        self.pids = torch.tensor(pids)
        self.clothes = torch.tensor(clothes)
        self.variant = torch.tensor(variant)
        self.cache = cache
        self._cached = torch.zeros(len(self.keys), dtype=torch.bool)
        self._store: torch.Tensor | None = None  # allocated on first use; pages are touched only when filled

    @classmethod
    def from_dataset(
        cls,
        dataset: str,
        root: str | os.PathLike | None,
        image_size: tuple[int, int],
        expanded: str | os.PathLike | None = None,
        *,
        cache: bool = True,
    ) -> TrainSet:
        """Originals through `loaders.load(dataset, root)["train"]`; variants through `load_expanded`.

        Video records train on the frame the build expands (`Record.image_path`, the tracklet's first frame)."""
        loaded = loaders.load(dataset, root)
        if "train" not in loaded.splits:
            raise UserError(f"{dataset} has no train split")
        variants = load_expanded(expanded, dataset, split="train") if expanded is not None else None
        return cls(loaded["train"], loaded.root, image_size, variants, cache=cache)

    @property
    def num_pids(self) -> int:
        return len(self.maps.pids)

    @property
    def num_clothes(self) -> int:
        return len(self.maps.clothes)

    @property
    def has_variants(self) -> bool:
        return len(self.keys) > self.num_real

    def __len__(self) -> int:
        return len(self.keys)

    def _decode(self, item: int) -> torch.Tensor:
        if item < self.num_real:
            return load_uint8(self.root / self.records[item].image_path, self.image_size)
        return to_uint8(self._variants[self.variant_rows[item - self.num_real]][self._column], self.image_size)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        if not self.cache:
            return self._decode(item), item
        if self._store is None:
            self._store = torch.empty(len(self.keys), 3, *self.image_size, dtype=torch.uint8)
        if not self._cached[item]:  # decode once; later epochs read the cached pixels
            self._store[item] = self._decode(item)
            self._cached[item] = True
        return self._store[item], item


# -- pairing ----------------------------------------------------------------------------------------------------
class PairedBatchSampler:
    """DLCR pairing over an `IdentitySampler` of the real items: each batch = reals + one partner per real."""

    def __init__(
        self, base: IdentitySampler, partners: Sequence[Sequence[int]], schedule: ProgressiveSchedule, seed: int = 0
    ) -> None:
        self.base, self.partners, self.schedule, self.seed = base, partners, schedule, seed

    @property
    def epoch(self) -> int:
        return self.base.epoch

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def partner(self, real: int, u: float) -> int:
        """The partner of real item `real` for a uniform draw u ∈ [0, 1): a variant from the allowed pool."""
        pool = self.partners[real]
        size = self.schedule.pool_size(self.epoch, len(pool))
        return pool[min(int(u * size), size - 1)] if size else real  # no variants: paired with itself

    def __iter__(self) -> Iterator[list[int]]:
        for number, batch in self.base.numbered():
            u = np.random.default_rng([self.seed, self.epoch, number, 1]).random(len(batch))
            yield batch + [self.partner(real, float(x)) for real, x in zip(batch, u, strict=True)]

    def __len__(self) -> int:
        return len(self.base)


def real_mask(batch_size: int, paired: bool, device: torch.device | str = "cpu") -> torch.Tensor:
    """Which images of a batch are real (they get CAL's clothes losses): the first half of a paired batch, else all."""
    return torch.arange(batch_size, device=device) < (batch_size // 2 if paired else batch_size)
