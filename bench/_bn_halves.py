"""`python bench/_bn_halves.py K train ...`: `dlcr-data train ...` in one process whose model normalises each
training batch in two groups of chunks (even and odd K-image chunks), with separate BatchNorm statistics.

That is what 2 DDP processes do with one process's 2P-chunk batch (`sampler.py`: process r takes every other
chunk), while the losses still average over the whole batch as DDP's averaged gradients do. `train_scale.py` runs
it to measure how much of the 1-vs-2-process gap BatchNorm's per-process statistics explain.
"""

from __future__ import annotations

import sys

import torch

from dlcr_data.reid.model import ReIDModel

K = int(sys.argv.pop(1))
_forward = ReIDModel.forward


def _in_two_groups(self: ReIDModel, x: torch.Tensor, full: bool = False):
    if not self.training:
        return _forward(self, x, full)
    chunks = len(x) // K
    groups = [torch.cat([torch.arange(j * K, (j + 1) * K) for j in range(g, chunks, 2)]) for g in (0, 1)]
    outs = [_forward(self, x[idx.to(x.device)], full) for idx in groups]
    order = torch.cat(groups).to(x.device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=x.device)
    parts = [None if a is None else torch.cat([a, b])[inverse] for a, b in zip(*outs, strict=True)]
    return type(outs[0])(*parts) if full else tuple(parts)


ReIDModel.forward = _in_two_groups

from dlcr_data.cli import main  # noqa: E402  (after the patch)

main()
