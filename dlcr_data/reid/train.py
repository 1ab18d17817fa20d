"""Train the re-ID baseline (optionally CAL, optionally with DLCR pairing), resumable; extract features.

`train(TrainConfig(...))` runs under `accelerate` (single-process CPU, or `accelerate launch` for several GPUs).
Every random choice is seeded from (seed, epoch), so a run stopped after any epoch and resumed gives the same
result as an uninterrupted one. The out folder holds:

    train_config.json        what the run depends on (a rerun with another config is refused)
    checkpoints/epoch-NNNN/  model.safetensors, config.json, trainer_state.json, optimizer.safetensors, ...
    history.json             per-epoch losses, accuracies, learning rate, timing
    training_curve.png

Seed-method options (seed-methods.md §1, §3), all off by default:

* `gen_label="teacher"` (DG-Net, Zheng et al., CVPR 2019, `teacher_soft`): on generated images the identity CE is
  replaced by KL(teacher target ‖ student softmax) of the main classifier, the target being a frozen real-data
  teacher's renormalised softmax summed over the image and its flip. The teacher sees the same augmented tensors as
  the student (the soft label then describes the very pixels being classified, erased patches included; DG-Net's
  teacher scored the student's generated images and their flips). Weight: `losses.ramp_weight` of the run's
  progress (0 until 30 %, linear to 2 over the next 4 %). Real images keep the hard, label-smoothed CE. The teacher
  runs from the first step (its KL is logged while the weight is still 0).
* `fine_grained_head` (DG-Net's fine-grained mining): `model.FineGrainedHead` learns the structure provider's
  identity (CE) on generated images, weight `fine_grained_weight` (0.2) times the same ramp; the test feature
  concatenates both heads.
* `distill` / `shape_ot` (CLIP3DReID, Liu et al., CVPR 2024): see `distill.py`.

Progress = (epoch + batch / batches this epoch) / epochs = global step / total steps when every epoch has as many
batches (identity sampling may vary that by a batch or two), so the ramp is derivable from the epoch on resume and
scales with the run length (a rerun with more epochs stretches it, like `schedule_epochs`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from dlcr_data.errors import UserError
from dlcr_data.files import write_bytes_atomic, write_json_atomic
from dlcr_data.progress import Reporter
from dlcr_data.records import Record
from dlcr_data.reid.data import (
    PairedBatchSampler,
    ProgressiveSchedule,
    TrainSet,
    augment,
    load_uint8,
    normalize,
    real_mask,
    scale_epoch,
    to_uint8,
)
from dlcr_data.reid.distill import ClipTeacher, DistillHeads
from dlcr_data.reid.losses import (
    ClothesAdversarialLoss,
    CosFaceLoss,
    CrossEntropyLabelSmooth,
    TripletLoss,
    global_alignment_loss,
    ot_alignment_loss,
    ramp_weight,
    soft_target_kl,
    teacher_target,
)
from dlcr_data.reid.model import (
    CheckpointState,
    ClothesClassifier,
    ReIDConfig,
    ReIDModel,
    backbone_width,
    load_checkpoint,
    save_checkpoint,
)
from dlcr_data.reid.sampler import IdentitySampler
from dlcr_data.vocab import body_shapes

CONFIG_FILE = "train_config.json"
# Options that do not change what is learnt, so a rerun may change them (epochs: a rerun trains further).
_RUNTIME_ONLY = ("out", "epochs", "num_workers", "cache", "device", "mixed_precision", "keep_checkpoints", "overwrite")
GEN_LABELS = ("hard", "teacher")
# Seed-method fields left out of the fingerprint while at their defaults: a plain run's fingerprint stays what it
# was before they existed, so older run folders still resume.
_SEED_FIELDS = (
    "gen_label", "teacher", "teacher_start", "teacher_ramp", "teacher_cap", "fine_grained_head", "fine_grained_dim",
    "fine_grained_weight", "fine_grained_dropout", "distill", "distill_weight", "shape_ot", "shape_ot_weight",
    "shape_top_k", "sinkhorn_epsilon", "sinkhorn_iters",
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
    method: str = "baseline"  # "baseline" | "cal"
    pooling: str = "maxavg"
    last_stride_1: bool = True
    feature_dim: int | None = None
    image_size: tuple[int, int] = (256, 128)
    # optimisation (CAL defaults; DLCR keeps them)
    epochs: int = 60
    batch_p: int = 4  # identities per batch
    batch_k: int = 8  # images per identity; with pairing the batch doubles (P*K reals + P*K variants)
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    lr_milestones: tuple[int, ...] = (20, 40)
    lr_gamma: float = 0.1
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    triplet_weight: float = 1.0  # on the features before BN; CAL's configs use 0 (no pairwise loss)
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
    # DG-Net (CVPR 2019): labels of generated images, fine-grained head (module docstring)
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
    num_workers: int = 0  # DataLoader workers; ignored (0) with `cache`, whose pixels live in this process
    cache: bool = True  # decode each image once and keep it in memory (uint8): for small sets like the demo
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate)
    keep_checkpoints: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.image_size = tuple(self.image_size)
        self.lr_milestones = tuple(self.lr_milestones)
        self.progressive_thresholds = tuple(self.progressive_thresholds)
        self.progressive_fractions = tuple(self.progressive_fractions)
        if self.epochs < 1:
            raise UserError("epochs must be at least 1")
        self._check_seed_options()
        if self.teacher is not None and (Path(self.teacher) / "checkpoints").is_dir():
            # a training run stands for its newest checkpoint: pin which one (it enters the fingerprint)
            self.teacher = str(latest_checkpoint(Path(self.teacher)) or self.teacher)
        self.reid_config(0, 0)  # validates method and pooling
        self.progressive()  # validates the schedule

    def _check_seed_options(self) -> None:
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

    def seed_weight(self, progress: float) -> float:
        """DG-Net's ramped teacher weight at `progress` (global step / total steps); also scales the
        fine-grained head's loss (with `gen_label="hard"` the same ramp runs without a teacher)."""
        return ramp_weight(progress, self.teacher_start, self.teacher_ramp, self.teacher_cap)

    @property
    def scale(self) -> float:
        return self.epochs / self.schedule_epochs if self.schedule_epochs else 1.0

    def progressive(self) -> ProgressiveSchedule:
        return ProgressiveSchedule(self.progressive_thresholds, self.progressive_fractions).scaled(self.scale)

    def milestones(self) -> tuple[int, ...]:
        return tuple(scale_epoch(m, self.scale) for m in self.lr_milestones)

    def cal_start(self) -> int:
        return scale_epoch(self.cal_start_epoch, self.scale)

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_gamma ** sum(epoch >= m for m in self.milestones())

    def reid_config(self, num_classes: int, num_clothes: int) -> ReIDConfig:
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

    def fingerprint(self) -> dict:
        """What the learnt weights depend on, with the epoch schedule as resolved for this run."""
        d = json.loads(json.dumps(asdict(self)))  # tuples -> lists, as they come back from JSON
        for key in _RUNTIME_ONLY:
            d.pop(key)
        defaults = TrainConfig.__dataclass_fields__
        for key in _SEED_FIELDS:
            if d[key] == defaults[key].default:
                d.pop(key)
        progressive = self.progressive()
        d["resolved"] = {
            "lr_milestones": list(self.milestones()),
            "cal_start_epoch": self.cal_start(),
            "progressive_thresholds": list(progressive.thresholds),
        }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# -- the run ----------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one training step needs."""

    config: TrainConfig
    acc: object  # accelerate.Accelerator
    data: TrainSet
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    clothes_head: torch.nn.Module | None = None  # CAL only
    clothes_opt: torch.optim.Optimizer | None = None
    teacher: ReIDModel | None = None  # gen_label="teacher": frozen, eval mode
    clip: ClipTeacher | None = None  # distill: frozen
    distill_heads: torch.nn.Module | None = None  # distill: trainable projections
    distill_opt: torch.optim.Optimizer | None = None

    def __post_init__(self) -> None:
        c, device = self.config, self.acc.device
        self.variant = self.data.variant.to(device)  # >= 0: a generated image
        self.identity_loss = CrossEntropyLabelSmooth(c.label_smoothing)
        self.triplet_loss = TripletLoss(c.triplet_margin)
        self.clothes_loss = CosFaceLoss(c.clothes_scale, c.clothes_margin)
        self.adversarial_loss = ClothesAdversarialLoss(c.clothes_scale, c.cal_epsilon)
        self.pids, self.clothes = self.data.pids.to(device), self.data.clothes.to(device)
        self.pid2clothes = self.data.pid2clothes.to(device)


def train(config: TrainConfig, reporter: Reporter | None = None) -> Path:
    """Train (or continue training) into `config.out`; returns the last checkpoint folder."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    reporter = reporter or Reporter()
    out = Path(config.out)
    use_cpu = config.device == "cpu" or not torch.cuda.is_available()
    if config.device == "cuda" and use_cpu:
        raise UserError("--device cuda: no CUDA device is available")
    acc = Accelerator(cpu=use_cpu, mixed_precision=config.mixed_precision)
    check_out(out, config)
    acc.wait_for_everyone()  # nobody may see the folder half-cleared by `overwrite`
    if acc.is_main_process:
        _claim_out(out, config)
    acc.wait_for_everyone()

    set_seed(config.seed)  # model init (scratch presets, heads) is the same on every process and every run
    data = TrainSet.from_dataset(config.dataset, config.root, config.image_size, config.expanded, cache=config.cache)
    if (config.gen_label == "teacher" or config.fine_grained_head) and not data.has_variants:
        raise UserError(f"{config.expanded}: no train variants of {config.dataset}; teacher labels and the "
                        "fine-grained head learn from generated images")  # fmt: skip
    latest = latest_checkpoint(out)
    state = None
    if latest is not None:
        model, reid_cfg, state = load_checkpoint(latest, training=True)
        if state.label_maps != data.maps.to_dict():
            raise UserError(f"{latest}: trained on other identities/outfits than {config.dataset} has now")
        if state.epoch >= config.epochs:
            return latest
    else:
        reid_cfg = config.reid_config(data.num_pids, data.num_clothes)
        model = ReIDModel(reid_cfg)
    run = _prepare(config, acc, data, model, state)

    sampler = IdentitySampler(
        data.pids[: data.num_real].tolist(),
        config.batch_p,
        config.batch_k,
        config.seed,
        num_replicas=acc.num_processes,
        rank=acc.process_index,
    )
    paired = data.has_variants
    batches = PairedBatchSampler(sampler, data.partners, config.progressive(), config.seed) if paired else sampler
    workers = 0 if config.cache else config.num_workers
    loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=workers)
    history = state.trainer.get("history", []) if state else []

    for epoch in range(state.epoch if state else 0, config.epochs):
        started = time.perf_counter()
        batches.set_epoch(epoch)
        for opt in (run.optimizer, run.distill_opt):  # CAL's clothes classifier keeps a constant lr
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = config.lr_at(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 1009 + acc.process_index)
        if config.fine_grained_head:  # its dropout draws from torch's global RNG: reseeded so a resumed run matches
            torch.manual_seed(config.seed * 1_000_003 + epoch * 1009 + acc.process_index + 500_009)
        run.model.train()
        meter = Meter()
        name = f"epoch {epoch + 1}/{config.epochs}"
        advance = reporter.stage(name, len(loader))
        steps = len(loader)
        for step, (images, items) in enumerate(loader):
            items = items.to(acc.device)
            real = real_mask(len(items), paired, acc.device)  # paired batches: reals, then one partner each
            x = augment(images.to(acc.device), generator)
            progress = (epoch + step / steps) / config.epochs  # global step / total steps (module docstring)
            meter.add(train_step(run, x, items, real, epoch, progress), len(items))
            advance(1)
        reporter.done(name)
        record = {"epoch": epoch + 1, **meter.means(acc), "lr": config.lr_at(epoch)}
        record["variant_pool"] = config.progressive().fraction(epoch) if paired else None
        record["seconds"] = round(time.perf_counter() - started, 3)
        record["images_per_s"] = round(meter.images * acc.num_processes / max(record["seconds"], 1e-9), 1)
        history.append(record)
        if acc.is_main_process:
            _save_epoch(out, run, reid_cfg, epoch + 1, history)
        acc.wait_for_everyone()
    if acc.is_main_process:  # drawn once per call, not per epoch: matplotlib costs ~0.7 s, a demo epoch a few s
        write_bytes_atomic(out / "training_curve.png", training_curve(history))
    return latest_checkpoint(out)


def _prepare(config: TrainConfig, acc, data: TrainSet, model: ReIDModel, state: CheckpointState | None) -> Run:
    """Optimizers (Adam; CAL's clothes classifier and the distillation heads have their own), restored from `state`
    when resuming; the frozen teachers of the seed methods."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state.optimizers["model"])
    model, optimizer = acc.prepare(model, optimizer)
    run = Run(config, acc, data, model, optimizer)
    if config.method == "cal":
        head = ClothesClassifier(acc.unwrap_model(model).feature_dim, data.num_clothes)
        head_opt = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)  # constant
        if state is not None:
            head.load_state_dict(state.modules["clothes_classifier"])
            head_opt.load_state_dict(state.optimizers["clothes"])
        run.clothes_head, run.clothes_opt = acc.prepare(head, head_opt)
    if config.gen_label == "teacher":
        run.teacher = load_teacher(config.teacher, data, acc.device)
    if config.distill:
        words = body_shapes.BODY_SHAPE_WORDS if config.shape_ot else ()
        run.clip = ClipTeacher(config.distill, words, body_shapes.PROMPT_TEMPLATE).to(acc.device)
        student = acc.unwrap_model(model)
        heads = DistillHeads(student.pooled_dim, backbone_width(student.backbone), run.clip.dim, config.shape_ot)
        heads_opt = torch.optim.Adam(heads.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        if state is not None:
            heads.load_state_dict(state.modules["distill"])
            heads_opt.load_state_dict(state.optimizers["distill"])
        run.distill_heads, run.distill_opt = acc.prepare(heads, heads_opt)
    return run


def load_teacher(checkpoint: str, data: TrainSet, device) -> ReIDModel:
    """DG-Net's frozen teacher: a checkpoint (or a training run: its newest) of this dataset's identities (its
    label maps must be the student's, or its class k would not be the student's class k)."""
    teacher, _, state = load_checkpoint(checkpoint, device)
    if state.label_maps != data.maps.to_dict():
        raise UserError(f"--teacher {checkpoint}: trained on other identities/outfits than this training set")
    return teacher.requires_grad_(False).eval()


@torch.inference_mode()
def _teacher_targets(teacher: ReIDModel, x: torch.Tensor) -> torch.Tensor:
    """DG-Net's soft labels of a batch: the teacher's softmax on x and on its flip, summed and renormalised."""
    size = tuple(teacher.config.image_size)
    if tuple(x.shape[-2:]) != size:  # a teacher trained at another size sees the batch at its own
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return teacher_target(teacher(x)[2], teacher(x.flip(-1))[2])


def train_step(
    run: Run, x: torch.Tensor, items: torch.Tensor, real: torch.Tensor, epoch: int, progress: float = 0.0
) -> dict[str, float]:
    """One step. Identity + triplet losses on all images; CAL's clothes losses on the real images only; the seed
    methods' losses (module docstring) where configured. `progress` = global step / total steps.

    CAL's order: the clothes classifier learns from detached BN features (CosFace), then the backbone gets the
    identity losses plus, from `cal_start`, the adversarial loss through the *updated* classifier, whose weights
    are frozen for that pass."""
    config, acc = run.config, run.acc
    pids = run.pids[items]
    outputs = run.model(x, full=True)
    feature, bn_feature, logits = outputs[:3]
    generated = run.variant[items] >= 0  # a source without variants is paired with itself: still real
    out: dict[str, float] = {}
    if run.teacher is not None:  # DG-Net teacher_soft: reals keep the hard CE, generated images get the KL
        weight = config.seed_weight(progress)
        loss_id = run.identity_loss(logits[~generated], pids[~generated]) if (~generated).any() else logits.sum() * 0
        loss_teacher = logits.sum() * 0
        if generated.any():
            target = _teacher_targets(run.teacher, x[generated]).clone()  # clone: a normal tensor for autograd
            loss_teacher = soft_target_kl(logits[generated], target)
        loss = loss_id + weight * loss_teacher
        out |= {"loss_teacher": loss_teacher.item(), "teacher_weight": weight}
    else:
        loss_id = run.identity_loss(logits, pids)  # "hard": a variant carries its structure provider's identity
        loss = loss_id
    loss_tri = run.triplet_loss(feature, pids)
    loss = loss + config.triplet_weight * loss_tri
    out |= {"loss_id": loss_id.item(), "loss_triplet": loss_tri.item()}
    out["acc_id"] = (logits.argmax(1) == pids).float().mean().item()
    if outputs.fine_logits is not None:  # DG-Net fine-grained mining: structure identity, generated images only
        weight = config.fine_grained_weight * config.seed_weight(progress)
        loss_fine = outputs.fine_logits.sum() * 0
        if generated.any():
            loss_fine = F.cross_entropy(outputs.fine_logits[generated], pids[generated])
        loss = loss + weight * loss_fine
        out |= {"loss_fine": loss_fine.item(), "fine_grained_weight": weight}
    if run.clip is not None:  # CLIP3DReID: global alignment (+ local OT to body-shape words)
        clip_embeddings = run.clip.image_embeddings(x)
        projected, local = run.distill_heads(outputs.pooled, outputs.feature_map)
        loss_distill = global_alignment_loss(projected, clip_embeddings.clone())
        loss = loss + config.distill_weight * loss_distill
        out["loss_distill"] = loss_distill.item()
        if local is not None:
            words = run.clip.top_words(clip_embeddings, config.shape_top_k).clone()
            loss_ot = ot_alignment_loss(local, words, config.sinkhorn_epsilon, config.sinkhorn_iters)
            loss = loss + config.shape_ot_weight * loss_ot
            out["loss_shape_ot"] = loss_ot.item()
    if run.clothes_head is not None:
        clothes, real_feature = run.clothes[items][real], bn_feature[real]
        head = acc.unwrap_model(run.clothes_head)
        run.clothes_head.train()
        if epoch >= config.cal_start():
            loss_clothes = run.clothes_loss(run.clothes_head(real_feature.detach()), clothes)
            run.clothes_opt.zero_grad()
            acc.backward(loss_clothes)
            run.clothes_opt.step()
            mask = run.pid2clothes[pids[real]]
            loss_adv = run.adversarial_loss(head(real_feature, detach_weight=True), clothes, mask)
            loss = loss + loss_adv
            out["loss_adv"] = loss_adv.item()
        else:  # not trained yet (CAL), only logged
            with torch.no_grad():
                loss_clothes = run.clothes_loss(head(real_feature), clothes)
        with torch.no_grad():
            out["acc_clothes"] = (head(real_feature).argmax(1) == clothes).float().mean().item()
        out["loss_clothes"] = loss_clothes.item()
    run.optimizer.zero_grad()
    if run.distill_opt is not None:
        run.distill_opt.zero_grad()
    acc.backward(loss)
    run.optimizer.step()
    if run.distill_opt is not None:
        run.distill_opt.step()
    out["loss"] = loss.item()
    if not all(map(_finite, out.values())):
        raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}: {out}")
    return out


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


class Meter:
    """Image-weighted running means of step values."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.images = 0

    def add(self, values: dict[str, float], n: int) -> None:
        self.images += n
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * n

    def means(self, acc) -> dict[str, float]:
        keys = sorted(self.sums)
        totals = torch.tensor([self.sums[k] for k in keys] + [float(self.images)], device=acc.device)
        totals = acc.reduce(totals, reduction="sum") if acc.num_processes > 1 else totals
        count = max(totals[-1].item(), 1.0)
        return {k: round(v / count, 6) for k, v in zip(keys, totals[:-1].tolist(), strict=True)}


# -- out folder, checkpoints, history ---------------------------------------------------------------------------
def check_out(out: Path, config: TrainConfig) -> None:
    """Refuse to continue a run in `out` made with another config (unless `overwrite`). Every process checks, so
    all of them stop together."""
    path = out / CONFIG_FILE
    if config.overwrite or not path.is_file():
        return
    previous, current = json.loads(path.read_text()), config.fingerprint()
    if previous != current:
        changed = sorted(k for k in previous.keys() | current.keys() if previous.get(k) != current.get(k))
        raise UserError(
            f"{out} holds a run with another config (differs in: {', '.join(changed)}); "
            "use another --out, or --overwrite to start afresh"
        )


def _claim_out(out: Path, config: TrainConfig) -> None:
    """Main process: with `overwrite`, clear an earlier run; record the config."""
    if config.overwrite:
        for name in ("checkpoints", "history.json", "training_curve.png", CONFIG_FILE):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    write_json_atomic(out / CONFIG_FILE, config.fingerprint())


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint (its trainer_state.json is written last)."""
    folder = Path(out) / "checkpoints"
    done = sorted(p for p in folder.glob("epoch-*") if (p / "trainer_state.json").is_file()) if folder.is_dir() else []
    return done[-1] if done else None


def _save_epoch(out: Path, run: Run, reid_cfg: ReIDConfig, epoch: int, history: list[dict]) -> Path:
    """Checkpoint `epoch` into a temp folder renamed into place (atomic), prune old ones, write the history."""
    folder = out / "checkpoints"
    final = folder / f"epoch-{epoch:04d}"
    tmp = folder / f".epoch-{epoch:04d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    optimizers = {"model": run.optimizer.state_dict()}
    modules = {}
    if run.clothes_head is not None:
        optimizers["clothes"] = run.clothes_opt.state_dict()
        modules["clothes_classifier"] = run.acc.unwrap_model(run.clothes_head)
    if run.distill_heads is not None:  # training-only modules: saved so that a resumed run continues them
        optimizers["distill"] = run.distill_opt.state_dict()
        modules["distill"] = run.acc.unwrap_model(run.distill_heads)
    save_checkpoint(
        tmp,
        run.acc.unwrap_model(run.model),
        reid_cfg,
        epoch=epoch,
        label_maps=run.data.maps.to_dict(),
        optimizers=optimizers,
        modules=modules,
        trainer_state={"history": history, "train_config": run.config.fingerprint()},
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(folder.glob("epoch-*"))[: -max(run.config.keep_checkpoints, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    write_json_atomic(out / "history.json", history)
    return final


def training_curve(history: Sequence[dict]) -> bytes:
    """PNG bytes: losses (left) and batch accuracies (right) per epoch (matplotlib's Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [h["epoch"] for h in history]
    for ax, prefix, title in ((fig.add_subplot(1, 2, 1), "loss", "losses"), (fig.add_subplot(1, 2, 2), "acc", "")):
        for key in sorted({k for h in history for k in h if k.startswith(prefix)}):
            ax.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(title or "training accuracy (batch)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- features ---------------------------------------------------------------------------------------------------
def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def _extract_uint8(model: ReIDModel, images: list[torch.Tensor], batch_size: int, device) -> torch.Tensor:
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
    feature before normalisation, for the caller to pool (CAL: mean, then L2-normalise; see `pool_frames`).
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


def pool_frames(frames: torch.Tensor) -> torch.Tensor:
    """A tracklet feature from its (T, D) frame features: mean, then L2-normalise (CAL's video test)."""
    return F.normalize(frames.mean(0), dim=0)
