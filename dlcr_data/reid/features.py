"""Test features of a trained model: of PIL images (the identity gate, refinement's query variants) and of a
dataset's records (evaluation), flip-augmented as CAL's test."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from dlcr_data.records import Record
from dlcr_data.reid.data import load_uint8, normalize, to_uint8
from dlcr_data.reid.model import ReIDModel


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def _extract_uint8(model: ReIDModel, images: list[torch.Tensor], batch_size: int, device) -> torch.Tensor:
    """(N, D) features of uint8 (3, H, W) tensors already at the model's input size."""
    feats = []
    for i in range(0, len(images), batch_size):
        x = normalize(torch.stack(images[i : i + batch_size]).to(device))
        feats.append(model.extract(x).float().cpu())
    return torch.cat(feats) if feats else torch.empty(0, model.embedding_dim)


@torch.inference_mode()
def extract_images(model: ReIDModel, images: Sequence[Image.Image], batch_size: int = 64) -> torch.Tensor:
    """(N, D) L2-normalised, flip-augmented features of PIL images (resized to the model's input size)."""
    size = tuple(model.config.image_size)
    return _extract_uint8(model, [to_uint8(im, size) for im in images], batch_size, _device_of(model))


@torch.inference_mode()
def extract_features(
    model: ReIDModel,
    records: Sequence[Record],
    root: str | os.PathLike,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    *,
    clip_fn: Callable[[Record], Sequence[str]] | None = None,
) -> dict[str, torch.Tensor]:
    """Features by record key. Image record → (D,) L2-normalised, flip-augmented (CAL's test feature).

    Video record → (T, D): per frame (the frames `clip_fn(record)` picks; default all), the flip-augmented BN
    feature before normalisation, for the caller to pool (CAL: clip means, then `protocols.tracklet_feature`;
    see `evaluate.dataset_features`).
    """
    device = device or _device_of(model)
    model.to(device).eval()
    size, root = tuple(model.config.image_size), Path(root)
    items = []  # (key, path, video?)
    for r in records:
        if r.frames:
            items += [(r.key, f, True) for f in (clip_fn(r) if clip_fn else r.frames)]
        else:
            items.append((r.key, r.path, False))
    out: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        x = normalize(torch.stack([load_uint8(root / path, size) for _, path, _ in chunk]).to(device))
        raw = model.embed(x).float().cpu()  # CAL's flip sum; DG-Net's concatenation with a fine-grained head
        for (key, _, video), feat in zip(chunk, raw, strict=True):
            out.setdefault(key, []).append(feat if video else F.normalize(feat, dim=0))
    videos = {r.key for r in records if r.frames}
    return {key: torch.stack(feats) if key in videos else feats[0] for key, feats in out.items()}
