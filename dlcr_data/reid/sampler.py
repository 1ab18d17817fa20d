"""What each training step sees: identity-balanced batches (P chunks of K images), DLCR pairing and its
progressive schedule, all deterministic from (seed, epoch).

**Identity sampling** (`IdentitySampler`): CAL's chunks of K images of one identity, P chunks per batch; every
image drawn gets a *draw key* (its place in the epoch) that seeds its augmentation, its video clip and its
partner, so a run is the same whatever the number of processes.

**DLCR pairing** (docs/dlcr-method.md §3.1): `PairedBatchSampler` turns each identity-balanced batch of B real items
into 2B items: the B reals, then one variant *of the same source image* per real, in the same order. A source
without variants (skipped by the build, or outside a `--limit`ed build) is paired with itself: the same image again,
augmented differently, so every batch keeps its real/partner halves.

**Progressive learning** (§3.2): at epoch e (0-based) a partner is drawn uniformly from the first ⌊V·p⌋ of the
source's V variants (at least 1), p = fractions[i] for the first threshold with e ≤ thresholds[i], all V after
the last threshold. DLCR: thresholds (5, 10, 15), fractions (0.25, 0.5, 0.75) → 2, 5, 7, 10 of 10 variants.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dlcr_data.errors import UserError

Draw = tuple[int, int]  # (dataset item, draw key): the key seeds the item's augmentation, clip and partner


class IdentitySampler:
    """A batch sampler: yields lists of P·K `Draw`s (P chunks of K images of one identity each).

    CAL's `DistributedRandomIdentitySampler` (Simple-CCReID `data/samplers.py`): each identity's images are
    shuffled (drawn with replacement up to K when it has fewer) and cut into chunks of K, a shorter last chunk
    dropped; all chunks are shuffled together and cut to a multiple of the number of processes; process r takes
    chunks r, r + n, r + 2n, ...; a batch is P consecutive chunks of those (a last incomplete batch dropped). An
    identity with 2K or more images may own two chunks of one batch, as in CAL. A chunk's images get draw keys
    from its place in the epoch's shuffled list, so one process's batch of P·n chunks and n processes' batches of
    P chunks see the same images with the same keys (2 processes x 4 chunks = 1 process x 8 chunks, step by step).
    """

    def __init__(
        self, pids: Sequence[int], p: int, k: int, seed: int = 0, *, num_replicas: int = 1, rank: int = 0
    ) -> None:
        if p < 1 or k < 1:
            raise UserError(f"batch needs P >= 1 identity chunks and K >= 1 images, not {p}x{k}")
        self.by_pid: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            self.by_pid.setdefault(int(pid), []).append(index)
        if len(self.by_pid) < 2:
            raise UserError(
                f"identity-balanced batches need at least 2 identities, the training set has {len(self.by_pid)}"
            )
        self.p, self.k, self.seed = p, k, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._batches: list[list[Draw]] | None = None
        if not self.batches():
            raise UserError(
                f"the training set ({len(pids)} images) gives no full batch of {p} chunks x {k} images per process "
                f"on {num_replicas} process(es); lower --batch-p or --batch-k"
            )

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._batches = epoch, None

    def batches(self) -> list[list[Draw]]:
        """This process's batches this epoch (computed once per epoch, so `len` and iteration agree)."""
        if self._batches is None:
            self._batches = self._draw(np.random.default_rng([self.seed, self.epoch]))
        return self._batches

    def _draw(self, rng: np.random.Generator) -> list[list[Draw]]:
        chunks = []
        for pid in sorted(self.by_pid):
            idxs = self.by_pid[pid]
            order = rng.choice(idxs, self.k, replace=True) if len(idxs) < self.k else rng.permutation(idxs)
            chunks += [order[i : i + self.k].tolist() for i in range(0, len(order) - self.k + 1, self.k)]
        order = rng.permutation(len(chunks))
        order = order[: len(order) - len(order) % self.num_replicas]
        mine = [int(c) for c in order[self.rank :: self.num_replicas]]
        place = {c: i for i, c in enumerate(order.tolist())}  # a chunk's place in the epoch: its images' keys
        keyed = [[(item, place[c] * self.k + j) for j, item in enumerate(chunks[c])] for c in mine]
        starts = range(0, len(keyed) - self.p + 1, self.p)
        return [[draw for chunk in keyed[i : i + self.p] for draw in chunk] for i in starts]

    def __iter__(self) -> Iterator[list[Draw]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


# -- progressive learning ---------------------------------------------------------------------------------------
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

    def __iter__(self) -> Iterator[list[Draw]]:
        for batch in self.base:  # a partner's key: its real's key, odd (reals' keys are doubled: even)
            reals = [(item, 2 * key) for item, key in batch]
            partners = []
            for item, key in reals:
                u = float(np.random.default_rng([self.seed, self.epoch, key, 1]).random())
                partners.append((self.partner(item, u), key + 1))
            yield reals + partners

    def __len__(self) -> int:
        return len(self.base)
