"""Identity-balanced batches (P identities x K images), deterministic from (seed, epoch).

As torchreid's / CAL's RandomIdentitySampler: each identity's images are shuffled and cut into chunks of K
(identities with fewer than K images are drawn with replacement up to K; a last chunk shorter than K is dropped);
then P identities that still have chunks are drawn at random, one chunk each, until fewer than P have any left.
Across processes (`num_replicas` > 1) every process draws the same batches and keeps every n-th one, cut to a
multiple of n so all processes run the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from dlcr_data.errors import UserError


class IdentitySampler:
    """A batch sampler: yields lists of P·K dataset indices (K consecutive ones per identity)."""

    def __init__(
        self, pids: Sequence[int], p: int, k: int, seed: int = 0, *, num_replicas: int = 1, rank: int = 0
    ) -> None:
        if p < 1 or k < 1:
            raise UserError(f"batch needs P >= 1 identities and K >= 1 images, not {p}x{k}")
        self.by_pid: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            self.by_pid.setdefault(int(pid), []).append(index)
        if len(self.by_pid) < p:
            raise UserError(f"batch asks for P={p} identities but the training set has only {len(self.by_pid)}")
        self.p, self.k, self.seed = p, k, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._batches: list[list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._batches = epoch, None

    def batches(self) -> list[list[int]]:
        """This epoch's batches over all processes (computed once per epoch, so `len` and iteration agree)."""
        if self._batches is None:
            self._batches = self._draw(np.random.default_rng([self.seed, self.epoch]))
        return self._batches

    def _draw(self, rng: np.random.Generator) -> list[list[int]]:
        chunks: dict[int, list[list[int]]] = {}
        for pid in sorted(self.by_pid):
            idxs = self.by_pid[pid]
            order = rng.choice(idxs, self.k, replace=True) if len(idxs) < self.k else rng.permutation(idxs)
            chunks[pid] = [order[i : i + self.k].tolist() for i in range(0, len(order) - self.k + 1, self.k)]
        batches = []
        available = sorted(chunks)
        while len(available) >= self.p:
            chosen = rng.choice(available, self.p, replace=False)
            batches.append([i for pid in chosen for i in chunks[int(pid)].pop()])
            available = [pid for pid in available if chunks[pid]]
        return batches

    def numbered(self) -> list[tuple[int, list[int]]]:
        """This process's batches with their epoch-wide numbers (pairing seeds its draws with them)."""
        batches = self.batches()
        usable = len(batches) - len(batches) % self.num_replicas
        return [(n, batches[n]) for n in range(self.rank, usable, self.num_replicas)]

    def __iter__(self) -> Iterator[list[int]]:
        return (batch for _, batch in self.numbered())

    def __len__(self) -> int:
        return len(self.batches()) // self.num_replicas
