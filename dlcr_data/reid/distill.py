"""CLIP3DReID-style distillation (Liu et al., CVPR 2024) from a frozen CLIP into the re-ID student.

Two terms, both on every training image (reals and generated variants):

* **Global alignment** (`--distill CLIP_MODEL`): a learned linear projection of the student's pooled backbone
  feature should match CLIP's image embedding of the same image: `losses.global_alignment_loss` (MSE between the
  L2-normalised vectors, as the paper; the release used a KL on logits at temperature 2).
* **Local shape alignment** (`--shape-ot`): the student's local features (the spatial tokens of the last backbone
  feature map, through a second learned projection into CLIP's joint space) are matched by Sinkhorn optimal
  transport to the text embeddings of body-shape descriptors (SHAPY words in
  `vocab.body_shapes.PROMPT_TEMPLATE`):
  `losses.ot_alignment_loss`. Each image uses the `top_k` (4) words CLIP's zero-shot scores rank highest *for
  that image* (cosine between its CLIP image embedding and each prompt's text embedding), so the descriptors
  follow the body in the picture; CLIP3DReID labelled body shapes with CLIP the same way, offline.

The CLIP teacher runs online, in inference mode, on the very augmented batch the student sees (flip, crop,
erasing): the target then describes exactly the pixels the student is given. Caching targets of un-augmented
images once would be cheaper (one CLIP pass per image per run instead of per step), but would ask the student to
reproduce CLIP's view of pixels it did not see (e.g. an erased patch). The trainer's images arrive ImageNet-
normalised at the re-ID size; `ClipTeacher.prepare` de-normalises them, pads them to a square with CLIP's mean
colour (CLIP3DReID fed 224x224 padded crops: a person crop is tall, a centre crop would cut head and feet),
resizes them to CLIP's input size and applies CLIP's own normalisation, all on the tensor (no PIL round trip).

The projections (`DistillHeads`) are extra trainable modules: checkpoints save them (`distill.safetensors`) and a
resumed run restores them, but inference never needs them (nor CLIP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcr_data.pretrained import load_clip, load_pretrained, pooled_features
from dlcr_data.reid.data import IMAGENET_MEAN, IMAGENET_STD
from dlcr_data.vocab.body_shapes import shape_text_embeddings

DISTILL_OPTION = "--distill"


class ClipTeacher(nn.Module):
    """A frozen CLIP (model + processor by HF id or local folder) giving image embeddings, and the body-shape
    prompts' text embeddings for `--shape-ot`."""

    def __init__(self, ref: str, words: tuple[str, ...] = (), template: str = "{word}") -> None:
        super().__init__()
        from transformers import AutoProcessor

        self.model = load_clip(ref, DISTILL_OPTION, dtype=torch.float32).eval().requires_grad_(False)
        processor = load_pretrained(AutoProcessor.from_pretrained, ref, DISTILL_OPTION)
        image_processor = getattr(processor, "image_processor", processor)
        self.size = int(self.model.config.vision_config.image_size)  # what the position embeddings expect
        self.register_buffer("mean", torch.tensor(image_processor.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_processor.image_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("imagenet_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("imagenet_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.words = tuple(words)
        text = shape_text_embeddings(self.model, processor, self.words, template) if self.words else torch.empty(0)
        self.register_buffer("text", F.normalize(text.float(), dim=-1), persistent=False)

    @property
    def dim(self) -> int:
        """CLIP's joint (projection) space: image and text embeddings."""
        return int(self.model.config.projection_dim)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised (B, 3, H, W) → CLIP input: pad to a square with CLIP's mean colour, resize, normalise."""
        rgb = x.float() * self.imagenet_std + self.imagenet_mean  # back to [0, 1]
        h, w = rgb.shape[-2:]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        square = self.mean.expand(len(rgb), 3, side, side).clone()
        square[:, :, top : top + h, left : left + w] = rgb
        resized = F.interpolate(square, size=(self.size, self.size), mode="bilinear", antialias=True)
        return (resized - self.mean) / self.std

    @torch.inference_mode()
    def image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """(B, projection_dim) CLIP image embeddings (not normalised) of an ImageNet-normalised batch."""
        return pooled_features(self.model.get_image_features(pixel_values=self.prepare(x))).float()

    @torch.inference_mode()
    def top_words(self, image_embeddings: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k, D) L2-normalised text embeddings of each image's k best zero-shot body-shape words."""
        sims = F.normalize(image_embeddings.float(), dim=-1) @ self.text.T
        return self.text[sims.topk(min(k, len(self.words)), dim=1).indices]


class DistillHeads(nn.Module):
    """The student's learned projections into CLIP's space: global (pooled feature) and local (feature-map tokens,
    only with `--shape-ot`). Training-only: saved with checkpoints to resume, unused at inference."""

    def __init__(self, pooled_dim: int, channels: int, clip_dim: int, local: bool) -> None:
        super().__init__()
        self.global_proj = nn.Linear(pooled_dim, clip_dim)
        self.local_proj = nn.Linear(channels, clip_dim) if local else None

    def forward(self, pooled: torch.Tensor, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, clip_dim) global projection; (B, h·w, clip_dim) local tokens or None."""
        local = None
        if self.local_proj is not None:
            local = self.local_proj(fmap.flatten(2).transpose(1, 2))  # (B, C, h, w) -> (B, h·w, C) -> D
        return self.global_proj(pooled), local
