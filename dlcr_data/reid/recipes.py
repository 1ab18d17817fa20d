"""Training recipes: each dataset's default `TrainConfig`, as CAL (Simple-CCReID, Gu et al. CVPR 2022) and DLCR
released them, and the peer file each value comes from.

`resolve(dataset, expanded, **overrides)` is the one way a run's config is made: the dataset's recipe, then DLCR's
stage 2 when `expanded` is given, then the user's overrides (every value can be overridden). The recipes:

* `cal-image` (PRCC, LTCC, VC-Clothes; and any dataset without a recipe of its own): `TrainConfig`'s defaults.
* `cal-last` (LaST): 16 identities x 4 images, CAL's triplet on normalised features.
* `cal-video` (CCVID): 8-frame clips of a 2D backbone pooled over time, 150 epochs.
* `demo`: CAL's image recipe made to run on 2 CPU cores (small from-scratch net, small images, 30 epochs).

DLCR's stage 2 (`--expanded`) pairs every real image with one variant and keeps the images per step: P is halved
(DLCR's `TRAIN_BATCH = MAX_BATCH_SIZE // 2`: 32 real + 32 generated on one GPU where CAL used 2 GPUs x 32 real).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from dlcr_data.errors import UserError
from dlcr_data.reid.config import TrainConfig

CAL_CONFIG = "Simple-CCReID configs/default_img.py"
CAL_YAML = "Simple-CCReID configs/res50_cels_cal.yaml"


@dataclass(frozen=True)
class Recipe:
    """`values` differ from `TrainConfig`'s defaults (= CAL's image recipe); `sources` names each value's peer file."""

    name: str
    values: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)


CAL_IMAGE = Recipe(
    "cal-image",
    sources={
        "image_size": f"{CAL_CONFIG} (DATA.HEIGHT 384, DATA.WIDTH 192)",
        "method": f"{CAL_YAML} (LOSS.CAL cal)",
        "epochs": f"{CAL_CONFIG} (TRAIN.MAX_EPOCH 60)",
        "batch_p": "Simple-CCReID script.sh (2 GPUs) x DATA.TRAIN_BATCH 32 / NUM_INSTANCES 8: 8 chunks of 8 per step",
        "batch_k": f"{CAL_CONFIG} (DATA.NUM_INSTANCES 8)",
        "lr": f"{CAL_CONFIG} (TRAIN.OPTIMIZER.LR 0.00035, adam)",
        "weight_decay": f"{CAL_CONFIG} (TRAIN.OPTIMIZER.WEIGHT_DECAY 5e-4)",
        "lr_milestones": f"{CAL_CONFIG} (TRAIN.LR_SCHEDULER.STEPSIZE [20, 40])",
        "lr_gamma": f"{CAL_CONFIG} (TRAIN.LR_SCHEDULER.DECAY_RATE 0.1)",
        "triplet_weight": f"{CAL_YAML} (LOSS.PAIR_LOSS_WEIGHT 0.0)",
        "cal_start_epoch": f"{CAL_CONFIG} (TRAIN.START_EPOCH_CC / START_EPOCH_ADV 25); the clothes classifier's own "
        "Adam, same lr and wd, never scheduled: Simple-CCReID main.py (optimizer_cc)",
        "clothes_scale": f"{CAL_CONFIG} (LOSS.CLA_S 16)",
        "clothes_margin": f"{CAL_CONFIG} (LOSS.CLA_M 0)",
        "cal_epsilon": f"{CAL_CONFIG} (LOSS.EPSILON 0.1)",
        "label_smoothing": "Simple-CCReID losses/cross_entropy_loss_with_label_smooth.py (epsilon 0.1, hard-coded)",
        "triplet_distance": "Simple-CCReID losses/triplet_loss.py (L2-normalised BN features, distance 1 - cos)",
        "pooling": f"{CAL_CONFIG} (MODEL.POOLING.NAME maxavg)",
        "last_stride_1": f"{CAL_CONFIG} (MODEL.RES4_STRIDE 1)",
        "augmentation": "Simple-CCReID data/__init__.py::build_img_transforms, data/img_transforms.py",
        "seed": f"{CAL_CONFIG} (SEED 1)",
    },
)
CAL_LAST = Recipe(
    "cal-last",
    {"batch_p": 16, "batch_k": 4, "triplet_weight": 1.0},
    {
        "batch_p": "Simple-CCReID script.sh (2 GPUs) x res50_cels_cal_tri_16x4.yaml DATA.TRAIN_BATCH 32 / K 4",
        "batch_k": "Simple-CCReID configs/res50_cels_cal_tri_16x4.yaml (DATA.NUM_INSTANCES 4)",
        "triplet_weight": "Simple-CCReID configs/res50_cels_cal_tri_16x4.yaml (LOSS.PAIR_LOSS_WEIGHT 1.0, PAIR_M 0.3)",
    },
)
CAL_VIDEO = Recipe(
    "cal-video",
    {
        "image_size": (256, 128),
        "seq_len": 8,
        "sampling_stride": 4,
        "dense_step": 64,
        "epochs": 150,
        "lr_milestones": (40, 80, 120),
        "cal_start_epoch": 50,
        "batch_p": 8,
        "batch_k": 4,
        "pooling": "max",
        "label_smoothing": 0.0,
        "augmentation": "cal-video",
    },
    {
        "image_size": "Simple-CCReID configs/default_vid.py (DATA.HEIGHT 256, DATA.WIDTH 128)",
        "pooling": "Simple-CCReID models/vid_resnet.py (c2dres50: spatial max pooling, temporal mean; 2048-d)",
        "label_smoothing": "Simple-CCReID configs/c2dres50_ce_cal.yaml (LOSS.CLA_LOSS crossentropy: no smoothing)",
        "augmentation": "Simple-CCReID data/__init__.py::build_vid_transforms (flip; AUG.RE_PROB 0.0)",
        "seq_len": "Simple-CCReID configs/default_vid.py (AUG.SEQ_LEN 8)",
        "sampling_stride": "Simple-CCReID configs/default_vid.py (AUG.SAMPLING_STRIDE 4)",
        "dense_step": "Simple-CCReID configs/default_vid.py (DATA.DENSE_SAMPLING True, DATA.SAMPLING_STEP 64)",
        "epochs": "Simple-CCReID configs/default_vid.py (TRAIN.MAX_EPOCH 150)",
        "lr_milestones": "Simple-CCReID configs/default_vid.py (TRAIN.LR_SCHEDULER.STEPSIZE [40, 80, 120])",
        "cal_start_epoch": "Simple-CCReID configs/default_vid.py (TRAIN.START_EPOCH_CC 50)",
        "batch_p": "Simple-CCReID script.sh + configs/default_vid.py: 2 GPUs x DATA.TRAIN_BATCH 16 / NUM_INSTANCES 4",
        "batch_k": "Simple-CCReID configs/default_vid.py (DATA.NUM_INSTANCES 4)",
    },
)
DEMO = Recipe(
    "demo",
    {
        "scratch": "resnet-small",
        "image_size": (64, 32),
        "epochs": 30,
        "lr": 1e-3,
        "schedule_epochs": 60,
        "batch_p": 8,
        "batch_k": 4,
    },
    {
        "scratch": "ours: no pretrained weights offline; a small ResNet trains on 2 CPU cores",
        "image_size": "ours: 3x cheaper than 128x64, which gave CC rank-1 3.5 vs 3.8 (docs/demo-experiment.md)",
        "epochs": "ours: 30 epochs take ~2 min (originals) per run and thread",
        "lr": "ours: CAL's 3.5e-4 is tuned for a pretrained ResNet-50; from scratch it learns too slowly",
        "schedule_epochs": "ours: CAL's and DLCR's 60-epoch schedule (milestones, CAL start, progressive) scaled",
        "batch_p": "ours: 40 training identities",
        "batch_k": "ours: 40 training identities",
    },
)
RECIPES: dict[str, Recipe] = {"last": CAL_LAST, "ccvid": CAL_VIDEO, "demo": DEMO}
DLCR_STAGE2 = "DLCR Simple-CCReID/train.py::train_cal_generated_data (TRAIN_BATCH = MAX_BATCH_SIZE // 2)"


def recipe_for(dataset: str) -> Recipe:
    """The dataset's recipe; CAL's image recipe for a dataset without one of its own."""
    return RECIPES.get(dataset.lower(), CAL_IMAGE)


def resolve(dataset: str, expanded: str | None = None, **overrides) -> TrainConfig:
    """The run's config: `dataset`'s recipe, DLCR's stage 2 when `expanded`, then `overrides` (TrainConfig fields;
    None means "not given")."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"not a training option: {', '.join(unknown)}")
    recipe = recipe_for(dataset)
    values = {**recipe.values, "recipe": recipe.name}
    if expanded is not None:
        p = values.get("batch_p", TrainConfig.batch_p)
        values |= {"batch_p": max(1, p // 2), "recipe": f"{recipe.name}+dlcr"}
    given = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**{**values, "dataset": dataset, "expanded": expanded, **given})


def sources(dataset: str, expanded: bool = False) -> dict[str, str]:
    """Each recipe value's peer file (what `--dry-run` prints beside the config)."""
    out = {**CAL_IMAGE.sources, **recipe_for(dataset).sources}
    if expanded:
        out["batch_p"] = f"{out['batch_p']}; halved for pairing: {DLCR_STAGE2}"
    return out
