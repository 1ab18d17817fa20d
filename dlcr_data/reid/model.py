"""The re-ID network (CAL-style): transformers backbone → global pooling → BN-neck → identity classifier.

`ReIDModel.forward(x)` returns `(feature, bn_feature, logits)`: the feature before the BN-neck feeds the triplet
loss, the BN feature is what inference uses (`extract`), the logits feed the identity loss. CAL's clothes
classifier is a separate `ClothesClassifier` (it has its own optimizer and sees detached features).
`forward(x, full=True)` returns a `ReIDOutput` with the pooled feature, the feature map and the optional
fine-grained head's outputs as well (the trainer's losses of the related methods need them).

**Fine-grained head** (DG-Net, Zheng et al., CVPR 2019, "fine-grained feature mining"; `fine_grained_head`): a
second embedding on the pooled backbone feature (linear → BN without shift, like the BN-neck) with heavy dropout
(0.75) before its own identity classifier. The trainer teaches it the *structure provider's* identity on generated
images, so it has to rely on what a clothes change keeps (face, hair, body shape). The test feature is then
DG-Net's: each head's flip-summed feature L2-normalised, concatenated and L2-normalised again (`embedding_dim` =
`feature_dim` + `fine_grained_dim` wide).

Checkpoints (save, load) are `checkpoints.py`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dlcr_data.errors import UserError
from dlcr_data.pretrained import load_pretrained

BACKBONE_OPTION = "--backbone"
DEMO_IMAGE_SIZE = (128, 64)
POOLINGS = ("avg", "gem", "max", "maxavg")
METHODS = ("baseline", "cal")
# From-scratch transformers ResNets (no download): "resnet-tiny" for tests, "resnet-small" for the CPU demo.
SCRATCH_PRESETS: dict[str, dict] = {
    "resnet-tiny": {"embedding_size": 8, "hidden_sizes": [8, 16, 16, 32], "depths": [1, 1, 1, 1]},
    "resnet-small": {"embedding_size": 32, "hidden_sizes": [32, 64, 128, 256], "depths": [1, 1, 1, 1]},
}


@dataclass
class ReIDConfig:
    backbone: str = "microsoft/resnet-50"  # HF id or local folder, loaded with from_pretrained
    scratch: str | None = None  # a SCRATCH_PRESETS name: random init from config, `backbone` unused
    feature_dim: int | None = None  # None: the pooled width; else a bias-free linear projection to it
    num_classes: int = 0  # training identities
    num_clothes: int = 0  # training outfits (CAL's clothes classifier)
    image_size: tuple[int, int] = (256, 128)  # (H, W); the CPU demo uses DEMO_IMAGE_SIZE
    pooling: str = "maxavg"  # CAL's default; "avg" | "gem" | "maxavg" (max ‖ avg, doubles the width)
    last_stride_1: bool = True  # CAL/BoT: last stage keeps its resolution (ResNet-family backbones only)
    method: str = "baseline"  # "baseline" | "cal"
    # DG-Net's fine-grained head: its test feature is concatenated with the main one (module docstring)
    fine_grained_head: bool = False
    fine_grained_dim: int = 512  # DG-Net's heads are 512-d
    fine_grained_dropout: float = 0.75  # DG-Net's second head

    def __post_init__(self) -> None:
        self.image_size = tuple(self.image_size)
        if self.fine_grained_dim < 1 or not 0 <= self.fine_grained_dropout < 1:
            raise UserError("fine_grained_dim must be >= 1 and fine_grained_dropout in [0, 1)")
        if self.pooling not in POOLINGS:
            raise UserError(f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        if self.method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.scratch is not None and self.scratch not in SCRATCH_PRESETS:
            raise UserError(f"unknown scratch preset {self.scratch!r}; choose one of {', '.join(SCRATCH_PRESETS)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ReIDConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# -- backbone ---------------------------------------------------------------------------------------------------
def build_backbone(config: ReIDConfig, backbone_config: dict | None = None) -> nn.Module:
    """A transformers vision model: from a saved config dict (checkpoints), a scratch preset, or pretrained."""
    from transformers import AutoConfig, AutoModel, ResNetConfig

    if backbone_config is not None:  # a checkpoint: architecture from its config, weights loaded afterwards
        cfg = AutoConfig.for_model(**backbone_config)
        net = AutoModel.from_config(cfg)
    elif config.scratch is not None:
        net = AutoModel.from_config(ResNetConfig(layer_type="basic", **SCRATCH_PRESETS[config.scratch]))
    else:
        net = load_pretrained(AutoModel.from_pretrained, config.backbone, BACKBONE_OPTION)
    if config.last_stride_1:
        set_last_stride_1(net)
    return net


def set_last_stride_1(net: nn.Module) -> None:
    """Make the last stage of a ResNet-family backbone stride 1 (its first block's strided convs)."""
    stages = getattr(getattr(net, "encoder", None), "stages", None)
    if not stages:
        raise UserError(f"last_stride_1 needs a ResNet-family backbone (encoder.stages); got {type(net).__name__}")
    for module in stages[-1].modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)


def backbone_width(net: nn.Module) -> int:
    cfg = net.config
    sizes = getattr(cfg, "hidden_sizes", None)
    return int(sizes[-1]) if sizes else int(cfg.hidden_size)


def feature_map(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map as (B, C, H, W); token outputs (B, N, C) become a (B, C, N, 1) map."""
    out = net(pixel_values=x).last_hidden_state
    return out.transpose(1, 2).unsqueeze(-1) if out.dim() == 3 else out


# -- heads ------------------------------------------------------------------------------------------------------
class GeMPooling(nn.Module):
    """Generalised-mean pooling with a learnable exponent p (p=1: average, p→∞: max)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


def pool(kind: str, x: torch.Tensor, gem: GeMPooling | None) -> torch.Tensor:
    if kind == "avg":
        return x.mean(dim=(2, 3))
    if kind == "gem":
        return gem(x)
    if kind == "max":  # CAL's C2D video model (models/vid_resnet.py): spatial max, then the temporal mean
        return x.amax(dim=(2, 3))
    return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)  # maxavg, as CAL


class NormalizedLinear(nn.Module):
    """Cosine-similarity classifier (CAL's NormalizedClassifier): logits = cos(x, w_c), in [-1, 1]."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor, detach_weight: bool = False) -> torch.Tensor:
        weight = self.weight.detach() if detach_weight else self.weight
        return F.linear(F.normalize(x, dim=1), F.normalize(weight, dim=1))


class ClothesClassifier(NormalizedLinear):
    """CAL's clothes classifier on the BN feature: trained on detached features, fooled by the backbone."""


class ReIDOutput(NamedTuple):
    """Everything one forward pass computes (`ReIDModel.forward(x, full=True)`)."""

    feature: torch.Tensor  # (B, D) before the BN-neck: triplet loss
    bn_feature: torch.Tensor  # (B, D) BN-neck feature: inference, clothes heads
    logits: torch.Tensor  # (B, num_classes) main identity classifier
    pooled: torch.Tensor  # (B, C') pooled backbone feature (before any projection): distillation
    feature_map: torch.Tensor  # (B, C, h, w) last backbone feature map: local tokens for optimal transport
    fine_feature: torch.Tensor | None = None  # (B, fine_grained_dim) fine-grained head's BN feature
    fine_logits: torch.Tensor | None = None  # its identity logits (after dropout in training)


class FineGrainedHead(nn.Module):
    """DG-Net's fine-grained mining head: linear → BN (no shift) → dropout → identity classifier."""

    def __init__(self, in_features: int, dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(in_features, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)  # as the BN-neck: the test feature stays centred
        self.dropout = nn.Dropout(dropout)  # 0.75: forces the head to spread identity over many channels
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(BN feature: the test feature's second half, logits)."""
        feature = self.bn(self.embed(pooled))
        return feature, self.classifier(self.dropout(feature))


class ReIDModel(nn.Module):
    def __init__(self, config: ReIDConfig, backbone_config: dict | None = None) -> None:
        super().__init__()
        if config.num_classes < 1:
            raise UserError("ReIDConfig.num_classes must be set (the number of training identities)")
        self.config = config
        self.backbone = build_backbone(config, backbone_config)
        width = backbone_width(self.backbone) * (2 if config.pooling == "maxavg" else 1)
        self.gem = GeMPooling() if config.pooling == "gem" else None
        self.projection = nn.Linear(width, config.feature_dim, bias=False) if config.feature_dim else None
        self.feature_dim = config.feature_dim or width
        # CAL's head (Simple-CCReID models/img_resnet.py, models/classifier.py): BN with weight ~ N(1, 0.02) and a
        # trainable bias at 0; a linear identity classifier, weight ~ N(0, 0.001), bias 0
        self.bn = nn.BatchNorm1d(self.feature_dim)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)
        nn.init.zeros_(self.bn.bias)
        self.classifier = nn.Linear(self.feature_dim, config.num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)
        self.pooled_dim = width
        self.fine_grained = (
            FineGrainedHead(width, config.fine_grained_dim, config.num_classes, config.fine_grained_dropout)
            if config.fine_grained_head
            else None
        )

    @property
    def embedding_dim(self) -> int:
        """Width of the test feature (`extract`): the BN feature, plus the fine-grained one when there is one."""
        return self.feature_dim + (self.config.fine_grained_dim if self.fine_grained is not None else 0)

    def forward(self, x: torch.Tensor, full: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(feature before BN: triplet, BN feature: inference and clothes heads, identity logits); with `full`, a
        `ReIDOutput` (a tuple starting with the same three). A keyword, not another method, so that a
        DistributedDataParallel wrapper still sees the call."""
        clips = x.ndim == 5  # (B, T, 3, H, W): CAL's C2D, a 2D backbone per frame, features averaged over time
        fmap = feature_map(self.backbone, x.flatten(0, 1) if clips else x)
        pooled = pool(self.config.pooling, fmap, self.gem)
        if clips:  # the mean before BN and projection (both affine at test) = the mean of per-frame test features
            pooled = pooled.view(*x.shape[:2], -1).mean(1)
        feature = self.projection(pooled) if self.projection is not None else pooled
        bn_feature = self.bn(feature)
        logits = self.classifier(bn_feature)
        if not full:
            return feature, bn_feature, logits
        fine = self.fine_grained(pooled) if self.fine_grained is not None else (None, None)
        return ReIDOutput(feature, bn_feature, logits, pooled, fmap, *fine)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flip-summed test feature before the final L2 normalisation (video frames are pooled on it).

        Plain: bn(f(x)) + bn(f(hflip(x))) (CAL). With the fine-grained head (DG-Net's test): each head's flip sum
        L2-normalised, then concatenated, so both heads weigh the same whatever their scales."""
        main, flipped = self(x, full=True), self(x.flip(-1), full=True)
        feature = main.bn_feature + flipped.bn_feature
        if self.fine_grained is None:
            return feature
        fine = main.fine_feature + flipped.fine_feature
        return torch.cat([F.normalize(feature, dim=1), F.normalize(fine, dim=1)], dim=1)

    @torch.inference_mode()
    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Eval feature, as CAL: L2-normalise(bn(f(x)) + bn(f(hflip(x)))), or DG-Net's concatenation of both heads
        (`embed`), `embedding_dim` wide. Switches the model to eval mode."""
        self.eval()
        return F.normalize(self.embed(x), dim=1)

    def backbone_config(self) -> dict:
        return self.backbone.config.to_dict()
