"""`TrainConfig`: every option of a training run, its validation, its schedule and its fingerprint.

The options of the related methods (all off by default; `train.py` says what each does):

* `gen_label="teacher"`, `teacher`, `teacher_*`: DG-Net's (Zheng et al., CVPR 2019) teacher soft labels on
  generated images, weighted by `generated_label_weight` (`losses.ramp_weight` of the run's progress).
* `fine_grained_head`, `fine_grained_*`: DG-Net's fine-grained mining head (`model.FineGrainedHead`).
* `distill`, `shape_ot`, `shape_*`, `sinkhorn_*`: CLIP3DReID's (Liu et al., CVPR 2024) distillation (`distill.py`).

`to_dict()` / `from_dict(d)` are the one round trip of a config through JSON; `fingerprint()` is what the learnt
weights depend on (written to the run's `train_config.json`, compared on resume).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from dlcr_data.errors import UserError

if TYPE_CHECKING:  # imported where used: the CLI reads this module's defaults without paying for torch
    from dlcr_data.reid.model import ReIDConfig
    from dlcr_data.reid.sampler import ProgressiveSchedule

GEN_LABELS = ("hard", "teacher")
TRIPLET_DISTANCES = ("cosine", "euclidean")
AUGMENTATIONS = (
    "cal",
    "cal-video",
    "none",
)  # augment.AUGMENTATIONS (named here: the CLI reads this module without torch)
CACHE_MODES = ("auto", "on", "off")  # data.TrainSet's
# Options that do not change what is learnt, so a rerun may change them (epochs: a rerun trains further).
_RUNTIME_ONLY = (
    "out", "recipe", "epochs", "num_workers", "cache", "device", "mixed_precision", "keep_checkpoints", "overwrite",
    "eval_every", "keep_best", "keep_every",
)  # fmt: skip


@dataclass
class TrainConfig:
    dataset: str = "demo"
    out: str = "out/reid"
    root: str | None = None
    expanded: str | None = None  # a build folder or Hub repo: DLCR pairing with its train variants
    # model
    backbone: str = "microsoft/resnet-50"
    scratch: str | None = None  # a from-scratch preset ("resnet-small" for the CPU demo) instead of `backbone`
    method: str = "cal"  # "baseline" | "cal"
    pooling: str = "maxavg"
    last_stride_1: bool = True
    feature_dim: int | None = None
    image_size: tuple[int, int] = (384, 192)
    seq_len: int = 1  # frames per training clip (CAL's video recipe: 8); 1 trains an image model
    sampling_stride: int = 4  # frames between a clip's frames
    dense_step: int = 64  # clips: training videos cut into pieces of this many frames (CAL's dense sampling)
    # optimisation: the defaults are CAL's image recipe (PRCC, LTCC, VC-Clothes); `recipes.py` holds every
    # dataset's recipe and the peer file of each value
    recipe: str = "cal-image"  # the recipe these values came from (recorded; `recipes.resolve` sets it)
    epochs: int = 60
    batch_p: int = 8  # identities per batch
    batch_k: int = 8  # images per identity; with pairing the batch doubles (P*K reals + P*K variants)
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    lr_milestones: tuple[int, ...] = (20, 40)
    lr_gamma: float = 0.1
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    triplet_weight: float = 0.0  # CAL's image configs: no pairwise loss; LaST's: 1
    triplet_distance: str = "cosine"  # "cosine": CAL's, on the L2-normalised BN feature | "euclidean": pre-BN
    augmentation: str = "cal"  # "cal" | "cal-video" (flip only) | "none" (augment.py)
    clothes_scale: float = 16.0  # CosFace s of the clothes classifier and the adversarial loss
    clothes_margin: float = 0.0
    cal_epsilon: float = 0.1
    cal_start_epoch: int = 25  # clothes classifier updates and adversarial loss from this epoch (0-based)
    progressive_thresholds: tuple[int, ...] = (5, 10, 15)
    progressive_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    # When set, every epoch-valued option above (lr milestones, CAL start, progressive thresholds) is written for
    # a run of this many epochs and scaled to `epochs` (e.g. 60 = DLCR's: a 12-epoch run uses thresholds (1, 2, 3),
    # milestones (4, 8), CAL from 5). None: they are absolute epochs.
    schedule_epochs: int | None = None
    seed: int = 1
    # DG-Net (CVPR 2019): labels of generated images, fine-grained head (train.py's docstring)
    gen_label: str = "hard"  # "hard": the structure (source) identity's CE | "teacher": DG-Net's teacher_soft KL
    teacher: str | None = None  # a checkpoint trained on this dataset's real images (same label maps)
    teacher_start: float = 0.3  # ramp of the teacher weight, as fractions of the run's steps (`ramp_weight`)
    teacher_ramp: float = 0.04
    teacher_cap: float = 2.0
    fine_grained_head: bool = False
    fine_grained_dim: int = 512
    fine_grained_weight: float = 0.2  # DG-Net's B_w, times the ramped teacher weight
    fine_grained_dropout: float = 0.75
    # CLIP3DReID (CVPR 2024): distillation from a frozen CLIP (distill.py)
    distill: str | None = None  # CLIP model (HF id or folder): global alignment to its image embedding
    distill_weight: float = 1.0
    shape_ot: bool = False  # local tokens ↔ body-shape text embeddings by Sinkhorn OT (needs `distill`)
    shape_ot_weight: float = 0.3
    shape_top_k: int = 4  # body-shape words per image (CLIP zero-shot ranking)
    sinkhorn_epsilon: float = 0.1
    sinkhorn_iters: int = 100
    # runtime
    num_workers: int | None = None  # DataLoader workers decoding images; None: min(4, CPUs); 0 with the cache
    cache: str = "auto"  # "on": decode each image once and keep it in memory | "off" | "auto": on when it fits
    eval_every: int = 0  # evaluate on the validation split every N epochs (0: never); never on test data
    keep_best: bool = False  # with eval_every: also keep the best-on-validation checkpoint (`best/`)
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate)
    keep_checkpoints: int = 1
    keep_every: int = 0  # also keep every N-th epoch's checkpoint (0: none), e.g. for accuracy-by-epoch curves
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.image_size = tuple(self.image_size)
        self.lr_milestones = tuple(self.lr_milestones)
        self.progressive_thresholds = tuple(self.progressive_thresholds)
        self.progressive_fractions = tuple(self.progressive_fractions)
        if self.epochs < 1:
            raise UserError("epochs must be at least 1")
        self._check_options()
        self._check_related_method_options()
        if self.teacher is not None and (Path(self.teacher) / "checkpoints").is_dir():
            # a training run stands for its newest checkpoint: pin which one (it enters the fingerprint)
            from dlcr_data.reid.checkpoints import latest_checkpoint

            self.teacher = str(latest_checkpoint(Path(self.teacher)) or self.teacher)
        self.reid_config(0, 0)  # validates method and pooling
        self.progressive()  # validates the schedule

    def _check_options(self) -> None:
        """One-line errors for values no run can use (CLI names, as the user typed them)."""
        choices = {
            "--triplet-distance": (self.triplet_distance, TRIPLET_DISTANCES),
            "--augmentation": (self.augmentation, AUGMENTATIONS),
            "--cache": (self.cache, CACHE_MODES),
        }
        for option, (value, allowed) in choices.items():
            if value not in allowed:
                raise UserError(f"{option} must be one of {', '.join(allowed)}, not {value!r}")
        if self.batch_p < 1 or self.batch_k < 1:
            raise UserError(
                f"batch needs --batch-p >= 1 identities and --batch-k >= 1 images, not {self.batch_p}x{self.batch_k}"
            )
        if self.seq_len < 1 or self.sampling_stride < 1 or self.dense_step < 0:
            raise UserError("--seq-len and --sampling-stride must be at least 1, dense_step at least 0")
        if self.eval_every < 0 or self.keep_every < 0:
            raise UserError("--eval-every and keep_every must be >= 0 (0: never)")
        if self.keep_best and not self.eval_every:
            raise UserError("--keep-best selects on validation: it needs --eval-every N")
        if self.seq_len > 1 and self.cache == "on":
            raise UserError("--cache on keeps one decoded image per item; clips (--seq-len > 1) are drawn anew")
        if self.seq_len > 1 and (self.distill or self.fine_grained_head or self.gen_label != "hard"):
            raise UserError("the related methods' options train image models: use --seq-len 1 with them")

    def _check_related_method_options(self) -> None:
        """One-line errors for option combinations that cannot work (CLI names, as the user typed them)."""
        if self.gen_label not in GEN_LABELS:
            raise UserError(f"--gen-label must be one of {', '.join(GEN_LABELS)}, not {self.gen_label!r}")
        if self.gen_label == "teacher" and not self.teacher:
            raise UserError("--gen-label teacher needs --teacher CHECKPOINT (a model trained on the real images)")
        if self.teacher and self.gen_label != "teacher":
            raise UserError("--teacher is only used with --gen-label teacher")
        for option, on in (
            ("--gen-label teacher", self.gen_label == "teacher"),
            ("--fine-grained-head", self.fine_grained_head),
        ):
            if on and not self.expanded:
                raise UserError(f"{option} needs generated images: pass --expanded BUILD")
        if self.shape_ot and not self.distill:
            raise UserError("--shape-ot needs --distill CLIP_MODEL (its text embeddings and zero-shot scores)")
        if not (0 <= self.teacher_start <= 1 and self.teacher_ramp >= 0 and self.teacher_cap >= 0):
            raise UserError("teacher_start must be in [0, 1], teacher_ramp and teacher_cap >= 0")
        if self.shape_top_k < 1 or self.sinkhorn_iters < 1 or self.sinkhorn_epsilon <= 0:
            raise UserError("shape_top_k and sinkhorn_iters must be >= 1, sinkhorn_epsilon > 0")

    def generated_label_weight(self, progress: float) -> float:
        """DG-Net's ramped teacher weight at `progress` (global step / total steps); also scales the
        fine-grained head's loss (with `gen_label="hard"` the same ramp runs without a teacher)."""
        from dlcr_data.reid.losses import ramp_weight

        return ramp_weight(progress, self.teacher_start, self.teacher_ramp, self.teacher_cap)

    @property
    def scale(self) -> float:
        return self.epochs / self.schedule_epochs if self.schedule_epochs else 1.0

    def progressive(self) -> ProgressiveSchedule:
        from dlcr_data.reid.sampler import ProgressiveSchedule

        return ProgressiveSchedule(self.progressive_thresholds, self.progressive_fractions).scaled(self.scale)

    def milestones(self) -> tuple[int, ...]:
        from dlcr_data.reid.sampler import scale_epoch

        return tuple(scale_epoch(m, self.scale) for m in self.lr_milestones)

    def cal_start(self) -> int:
        from dlcr_data.reid.sampler import scale_epoch

        return scale_epoch(self.cal_start_epoch, self.scale)

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_gamma ** sum(epoch >= m for m in self.milestones())

    def reid_config(self, num_classes: int, num_clothes: int) -> ReIDConfig:
        from dlcr_data.reid.model import ReIDConfig

        return ReIDConfig(
            backbone=self.backbone,
            scratch=self.scratch,
            feature_dim=self.feature_dim,
            num_classes=num_classes,
            num_clothes=num_clothes,
            image_size=self.image_size,
            pooling=self.pooling,
            last_stride_1=self.last_stride_1,
            method=self.method,
            fine_grained_head=self.fine_grained_head,
            fine_grained_dim=self.fine_grained_dim,
            fine_grained_dropout=self.fine_grained_dropout,
        )

    def to_dict(self) -> dict:
        """Every option, JSON-able (tuples as lists, as they come back from JSON)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The inverse of `to_dict`; keys that are not options (a fingerprint's `resolved`) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def fingerprint(self) -> dict:
        """What the learnt weights depend on, with the epoch schedule as resolved for this run."""
        d = self.to_dict()
        for key in _RUNTIME_ONLY:
            d.pop(key)
        progressive = self.progressive()
        d["resolved"] = {
            "lr_milestones": list(self.milestones()),
            "cal_start_epoch": self.cal_start(),
            "progressive_thresholds": list(progressive.thresholds),
        }
        return d


@dataclass(frozen=True)
class EvaluateOptions:
    """The defaults of `evaluate.evaluate_checkpoint` (and so of `dlcr-data evaluate`), torch-free so that the CLI
    reads them without importing the evaluator."""

    refine: int = 0  # K query variants for test-time refinement; 0: off
    expanded: str | None = None  # the build (folder or Hub repo) holding the query variants
    top_ids: int = 5  # DLCR's top-5: gallery images ("dlcr" rule) or identities ("identity") refinement re-scores
    refine_rule: str = "dlcr"  # refine.RULES: "dlcr" (DLCR's released rule) | "identity" (ours)
    batch_size: int = 64
