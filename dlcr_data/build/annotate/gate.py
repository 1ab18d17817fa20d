"""Identity gate: drop generated variants that no longer look like their person (`--identity-gate MODEL`).

From CLIP3DReID (Liu et al., CVPR 2024), whose generated/shape-aware samples are only useful if they keep the
identity; the paper's release has no such filter, so this is our identity-preservation filter in its spirit.

No test label ever decides (issue 11): whatever splits are built, the prototypes come from the built training
images only (`PROTOTYPE_SPLIT`; none when it is not built), and a variant of any other split (query, gallery) is
judged against its own source image, never against an identity: its pid is a test label. So a variant is rejected
when

- training split: its embedding has cosine < `threshold` to its identity's prototype (mean of the L2-normalised
  features of that identity's real training images, renormalised), or (with `require_rank1`) another training
  identity's prototype is more similar than its own;
- any other split: its embedding has cosine < `threshold` to its source image's embedding (no label involved;
  this still catches a variant whose person was damaged);
- either: more than `outside_tolerance` of the pixels outside the generator's mask changed (by more than
  `pixel_tolerance` in some channel) versus the source: the silhouette/identity region must stay put. Our
  generators composite through the mask, so this is 0 for them; a foreign generator may repaint the whole frame.

A rejected variant is simply not written; nothing stands in for it in the build (`evaluate --refine` stands in
the query's own feature, which is label-free too).

The embedder is chosen from the model reference: a folder holding a dlcr-data re-ID checkpoint (`config.json`
with the toolkit's checkpoint format, or a training run folder: its newest checkpoint) uses that model's own
CAL-style extract; anything else is a transformers vision backbone by HF id or local folder (pooled output,
L2-normalised, flip-averaged; a CLIP-like model's image features). A keypoint shape-ratio test (body proportions
kept) is not implemented: nothing in the build produces keypoints.

Weights are never downloaded here beyond what `from_pretrained` does for a Hub id; checkpoints load from
safetensors + JSON only (no pickle).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dlcr_data.build.options import GATE_OPTION, checkpoint_folder
from dlcr_data.errors import UserError
from dlcr_data.pretrained import default_device, load_pretrained, pooled_features
from dlcr_data.progress import quiet_library_warnings
from dlcr_data.records import Record

if TYPE_CHECKING:
    import torch

# No published threshold exists (CLIP3DReID has no such filter), so this is a parameter. 0.5 is for the toolkit's
# re-ID checkpoints: their inference feature is the BN-neck feature without shift (centred), so unrelated people
# sit near cosine 0 and a person's own prototype well above it; 0.5 keeps clear cases and drops variants that
# drifted half-way. Generic backbones (all-positive pooled features) give high cosines to everyone: there the
# rank-1 test does the work, or pass a higher --gate-threshold. A test split's variant is held to the same cosine,
# to its own source (same image but the garments): one threshold for both keeps a single knob.
DEFAULT_THRESHOLD = 0.5
# Input size (H, W) for a backbone saved without an image processor and without `image_size` in its config:
# the re-ID checkpoints' default (CAL's 256x128).
FALLBACK_SIZE = (256, 128)
# The only split whose identity labels the gate may use; every other split holds test identities.
PROTOTYPE_SPLIT = "train"
# The version of the keep/reject rule above, recorded with every gated build: a rerun regenerates shards gated
# under another one (`generate.stage`). 1 (unrecorded): prototypes of every built split, so test labels decided;
# 2: training prototypes only, a test split's variant against its source (issue 11). Bump it with the rule.
GATE_RULE = 2


# -- embedders --------------------------------------------------------------------------------------------------
class CheckpointEmbedder:
    """A dlcr-data re-ID checkpoint: its own `ReIDModel.extract` at its own input size (as evaluation does)."""

    kind = "reid-checkpoint"

    def __init__(self, folder: Path, device: str, batch_size: int) -> None:
        from dlcr_data.reid.checkpoints import load_checkpoint

        self.model_id = str(folder)
        self.model, self.config, _ = load_checkpoint(folder, device)
        self.device = device
        self.batch_size = batch_size

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        from dlcr_data.reid.data import normalize, to_uint8

        size = tuple(self.config.image_size)
        feats = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = torch.stack([to_uint8(im, size) for im in images[i : i + self.batch_size]])
                feats.append(self.model.extract(normalize(x.to(self.device))).float().cpu())
        width = getattr(self.model, "embedding_dim", self.model.feature_dim)  # with a fine-grained head: wider
        return torch.cat(feats) if feats else torch.empty(0, width)


class BackboneEmbedder:
    """A transformers vision model (`AutoModel`) by HF id or local folder, with its image processor if it has one."""

    kind = "transformers"

    def __init__(self, ref: str, device: str, batch_size: int) -> None:
        quiet_library_warnings()
        import torch
        from transformers import AutoModel

        self.model_id = ref
        self.device = device
        self.batch_size = batch_size
        # fp32 on every device: the gate compares cosines against a fixed threshold, bf16 would move them.
        net = load_pretrained(AutoModel.from_pretrained, ref, GATE_OPTION, dtype=torch.float32, use_safetensors=True)
        self.model = net.to(device).eval()
        self.processor = _load_processor(ref)
        self.size = _config_size(net.config) if self.processor is None else None
        try:  # fail now, with the reference in the message, rather than mid-build on the first batch
            self.dim = int(self([Image.new("RGB", (64, 128))]).shape[1])
        except (TypeError, ValueError, RuntimeError, AttributeError) as err:
            raise UserError(
                f"{GATE_OPTION} {ref}: {type(net).__name__} does not embed images ({type(err).__name__}: {err}); "
                "pass a dlcr-data re-ID checkpoint folder or a transformers vision model"
            ) from err

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        from dlcr_data.reid.data import normalize, to_uint8

        rgb = [im.convert("RGB") for im in images]
        if self.processor is not None:
            return self.processor(images=rgb, return_tensors="pt")["pixel_values"]
        # No processor saved: the checkpoints' transform (bilinear resize, ImageNet mean/std).
        return normalize(torch.stack([to_uint8(im, self.size) for im in rgb]))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if hasattr(self.model, "get_image_features"):  # CLIP-like: the projected image embedding
            out = self.model.get_image_features(pixel_values=x)
        else:
            out = self.model(pixel_values=x)
        return F.normalize(pooled_features(out).float(), dim=1)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        feats = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = self.pixels(images[i : i + self.batch_size]).to(self.device, torch.float32)
                # Average the two views' directions (each normalised), as the re-ID extract does with its flip.
                feats.append(F.normalize(self._forward(x) + self._forward(x.flip(-1)), dim=1).cpu())
        return torch.cat(feats) if feats else torch.empty(0, getattr(self, "dim", 0))


def _load_processor(ref: str):
    """The model's image processor (PIL backend: no torchvision needed), or None when it has none."""
    from transformers import AutoImageProcessor

    from dlcr_data.pretrained import ModelNotFound

    local = Path(ref).expanduser()
    if local.is_dir() and not (local / "preprocessor_config.json").is_file():
        return None
    try:
        return load_pretrained(AutoImageProcessor.from_pretrained, ref, GATE_OPTION, backend="pil")
    except ModelNotFound:  # a Hub model without a processor: the fallback transform
        return None


def _config_size(config) -> tuple[int, int]:
    """(H, W) from a config's `image_size` (own or its vision config's), else FALLBACK_SIZE."""
    size = getattr(config, "image_size", None) or getattr(getattr(config, "vision_config", None), "image_size", None)
    if size is None:
        return FALLBACK_SIZE
    if isinstance(size, int):
        return (size, size)  # ViT-style position embeddings need exactly this size
    return (int(size[0]), int(size[1]))


def load_embedder(ref: str, device: str | None = None, batch_size: int = 64) -> CheckpointEmbedder | BackboneEmbedder:
    device = str(device or default_device())
    folder = checkpoint_folder(ref)
    if folder is not None:
        return CheckpointEmbedder(folder, device, batch_size)
    return BackboneEmbedder(ref, device, batch_size)


# -- the gate ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateDecision:
    score: float  # cosine to the identity's prototype ("identity") or to the source image ("source")
    rank1: bool | None  # the own prototype is the most similar (ties count as rank-1); None: not tested
    outside_changed: float  # fraction of outside-mask pixels that differ from the source by > pixel_tolerance
    keep: bool
    reason: str  # "" when kept; else every failed test with its numbers, "; "-separated
    best_pid: int | None  # the most similar prototype's pid (the own pid when rank-1); None: not tested
    best_score: float | None  # its cosine
    reference: str = "identity"  # what `score` compares with: "identity" (training split) | "source" (test splits)


def identity_label(record: Record) -> int | None:
    """The identity a variant of `record` is judged by: its pid for a training image, None for any other split
    (a test label, which must never decide: such a variant is judged against its own source image)."""
    return record.pid if record.split == PROTOTYPE_SPLIT else None


class IdentityGate:
    """Prototypes per training identity (`fit`), then keep/reject decisions for generated variants (`check`)."""

    def __init__(
        self,
        model: str,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        require_rank1: bool = True,
        outside_tolerance: float = 0.01,
        pixel_tolerance: int = 8,
        device: str | None = None,
        batch_size: int = 64,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise UserError(f"--gate-threshold is a cosine, so it must lie in [-1, 1], not {threshold}")
        if not 0.0 <= outside_tolerance <= 1.0:
            raise UserError(f"outside_tolerance is a fraction of pixels in [0, 1], not {outside_tolerance}")
        if not 0 <= pixel_tolerance <= 255:
            raise UserError(f"pixel_tolerance is a uint8 difference in [0, 255], not {pixel_tolerance}")
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, not {batch_size}")
        self.threshold = float(threshold)
        self.require_rank1 = require_rank1
        self.outside_tolerance = float(outside_tolerance)
        self.pixel_tolerance = int(pixel_tolerance)
        self.embedder = load_embedder(model, device, batch_size)
        self.model_id = self.embedder.model_id  # for the manifest: the resolved checkpoint folder or the HF ref
        self.kind = self.embedder.kind  # "reid-checkpoint" | "transformers"
        self.pids: tuple[int, ...] = ()
        self.prototypes: torch.Tensor | None = None  # (P, D), row i = pids[i]

    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, D) L2-normalised, flip-averaged features (float32, CPU)."""
        return self.embedder(list(images))

    def fit(
        self,
        images: Iterable[Image.Image | None],
        pids: Sequence[int],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """One prototype per identity from its real images (the build passes its training images only); replaces
        any earlier prototypes.

        `images` may be lazy (a generator): it is decoded and embedded `batch_size` at a time, so a large dataset
        never sits in memory. A None item (an unreadable image) is left out. `progress(n)` is called once a batch
        of n images is embedded."""
        import torch
        import torch.nn.functional as F

        pids = [int(p) for p in pids]
        items = iter(images)
        sums: dict[int, torch.Tensor] = {}
        step = self.embedder.batch_size
        for start in range(0, len(pids), step):
            batch_pids = pids[start : start + step]
            batch = list(itertools.islice(items, len(batch_pids)))
            if len(batch) < len(batch_pids):
                raise ValueError(f"fit got fewer images than its {len(pids)} pids")
            chunk = list(zip(batch, batch_pids, strict=True))
            kept = [(image, pid) for image, pid in chunk if image is not None]
            if kept:
                for feat, (_, pid) in zip(self.embed([image for image, _ in kept]), kept, strict=True):
                    sums[pid] = sums[pid] + feat if pid in sums else feat.clone()
            if progress:
                progress(len(batch))
        if next(items, None) is not None:
            raise ValueError(f"fit got more images than its {len(pids)} pids")
        if not sums:
            raise ValueError("fit needs at least one image")
        self.pids = tuple(sorted(sums))  # sorted: the same prototypes whatever the input order
        # Mean of unit vectors, renormalised (= the normalised sum): every image weighs the same.
        self.prototypes = F.normalize(torch.stack([sums[p] for p in self.pids]), dim=1)

    def check(
        self,
        generated: Sequence[Image.Image],
        sources: Sequence[Image.Image],
        masks: Sequence[np.ndarray],
        pids: Sequence[int | None],
    ) -> list[GateDecision]:
        """One decision per generated image: `sources[i]` is its real source, `masks[i]` (bool H x W of the source)
        the region the generator was allowed to change, `pids[i]` the training identity it must keep, or None
        (`identity_label`: a test split) to judge it against its source image only."""
        if not len(generated) == len(sources) == len(masks) == len(pids):
            raise ValueError(
                f"check needs one source, mask and pid per generated image; got {len(generated)} generated, "
                f"{len(sources)} sources, {len(masks)} masks, {len(pids)} pids"
            )
        labelled = {int(p) for p in pids if p is not None}
        if labelled and self.prototypes is None:
            raise RuntimeError("IdentityGate.check before fit: build the identity prototypes first")
        index = {p: i for i, p in enumerate(self.pids)}
        missing = sorted(labelled - index.keys())
        if missing:
            raise ValueError(
                f"pid(s) {', '.join(map(str, missing[:10]))} have no prototype; fit() saw {len(self.pids)} "
                f"identities ({', '.join(map(str, self.pids[:10]))}{', ...' if len(self.pids) > 10 else ''})"
            )
        if not generated:
            return []
        feats = self.embed(generated)
        sims = feats @ self.prototypes.T if labelled else None  # (N, P) cosines: both sides are unit vectors
        to_source = self._source_cosines(feats, sources, pids)
        decisions = []
        for i, (gen, src, mask, pid) in enumerate(zip(generated, sources, masks, pids, strict=True)):
            outside = outside_changed(gen, src, mask, self.pixel_tolerance, index=i)
            if pid is None:
                decisions.append(self._decide(to_source[i], None, None, None, outside, "source"))
                continue
            row = sims[i]
            own = index[int(pid)]
            score = float(row[own])
            best = int(row.argmax())
            rank1 = score >= float(row[best])  # ties: rank-1 (argmax would pick the lower index)
            best = own if rank1 else best
            decisions.append(self._decide(score, rank1, self.pids[best], float(row[best]), outside, "identity"))
        return decisions

    def _source_cosines(
        self, feats: torch.Tensor, sources: Sequence[Image.Image], pids: Sequence[int | None]
    ) -> dict[int, float]:
        """Item -> cosine between its variant and its source, for the unlabelled items; each distinct source image
        is embedded once (a source's variants share its image)."""
        items = [i for i, p in enumerate(pids) if p is None]
        distinct = list({id(sources[i]): sources[i] for i in items}.values())
        if not distinct:
            return {}
        row = {id(image): j for j, image in enumerate(distinct)}
        source_feats = self.embed(distinct)
        return {i: float(feats[i] @ source_feats[row[id(sources[i])]]) for i in items}

    def _decide(
        self,
        score: float,
        rank1: bool | None,
        best_pid: int | None,
        best_score: float | None,
        outside: float,
        reference: str,
    ) -> GateDecision:
        failed = []
        if score < self.threshold:  # the identity reason keeps its earlier wording (manifests record it)
            what = "similarity" if reference == "identity" else "similarity to source"
            failed.append(f"{what} {score:.3f} < {self.threshold:.3f}")
        if self.require_rank1 and rank1 is False:
            failed.append(f"not rank-1 (best: pid {best_pid} at {best_score:.3f})")
        if outside > self.outside_tolerance:
            failed.append(f"outside mask changed {outside:.3f} > {self.outside_tolerance:.3f}")
        return GateDecision(
            score=score,
            rank1=rank1,
            outside_changed=outside,
            keep=not failed,
            reason="; ".join(failed),
            best_pid=best_pid,
            best_score=best_score,
            reference=reference,
        )


def outside_changed(
    generated: Image.Image, source: Image.Image, mask: np.ndarray, pixel_tolerance: int = 8, *, index: int = 0
) -> float:
    """Fraction of the pixels outside `mask` (bool H x W of `source`) whose largest channel difference between
    `generated` and `source` exceeds `pixel_tolerance`; 0 when the mask covers everything. A generated image of
    another size is compared after a bilinear resize to the source's (a foreign generator may round sizes)."""
    mask = np.asarray(mask, bool)
    if mask.shape != (source.height, source.width):
        raise ValueError(f"check item {index}: mask shape {mask.shape} does not match source size {source.size} (W, H)")
    src = np.asarray(source.convert("RGB"), np.int16)
    gen_img = generated.convert("RGB")
    if gen_img.size != source.size:
        gen_img = gen_img.resize(source.size, Image.Resampling.BILINEAR)
    gen = np.asarray(gen_img, np.int16)
    outside = ~mask
    total = int(outside.sum())
    if total == 0:
        return 0.0
    changed = np.abs(gen - src).max(axis=2) > pixel_tolerance
    return float((changed & outside).sum() / total)
