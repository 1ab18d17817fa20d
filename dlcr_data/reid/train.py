"""Train the re-ID baseline (optionally CAL, optionally with DLCR pairing), resumable: the `accelerate` loop.

`train(TrainConfig(...))` runs under `accelerate` (single-process CPU, or `accelerate launch` for several GPUs).
Every random choice is seeded from (seed, epoch), so a run stopped after any epoch and resumed gives the same
result as an uninterrupted one. What the out folder holds, and the checkpoint I/O, are `checkpoints.py`'s; the
options are `config.py`'s.

Options of the related methods, all off by default:

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

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dlcr_data import loaders
from dlcr_data.errors import UserError
from dlcr_data.files import write_bytes_atomic, write_json_atomic
from dlcr_data.progress import Reporter
from dlcr_data.reid.augment import AUGMENTATIONS, augment, draw_seed
from dlcr_data.reid.checkpoints import (
    CheckpointState,
    check_out,
    claim_out,
    latest_checkpoint,
    load_checkpoint,
    save_epoch,
)
from dlcr_data.reid.config import TrainConfig
from dlcr_data.reid.data import TrainSet, real_mask
from dlcr_data.reid.distill import ClipTeacher, DistillHeads
from dlcr_data.reid.losses import (
    ClothesAdversarialLoss,
    CosFaceLoss,
    CrossEntropyLabelSmooth,
    TripletLoss,
    global_alignment_loss,
    ot_alignment_loss,
    soft_target_kl,
    teacher_target,
)
from dlcr_data.reid.model import ClothesClassifier, ReIDConfig, ReIDModel, backbone_width
from dlcr_data.reid.plots import training_curve
from dlcr_data.reid.sampler import IdentitySampler, PairedBatchSampler
from dlcr_data.reid.validation import check_validation, keep_if_best, validate
from dlcr_data.vocab import body_shapes


@dataclass
class TrainingState:
    """What one training step needs: the config, the accelerator, the data, the modules and their optimizers."""

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
        self.triplet_loss = TripletLoss(c.triplet_margin, c.triplet_distance)
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
    fingerprint = config.fingerprint()
    check_out(out, fingerprint, config.overwrite)
    acc.wait_for_everyone()  # nobody may see the folder half-cleared by `overwrite`
    val_splits = None
    if config.eval_every:
        check_validation(config.dataset)
        val_splits = loaders.load(config.dataset, config.root).splits
    if acc.is_main_process:
        claim_out(out, fingerprint, config.overwrite)
        write_json_atomic(out / "run_config.json", config.to_dict())  # every option of this call, as resolved
    acc.wait_for_everyone()

    set_seed(config.seed)  # model init (scratch presets, heads) is the same on every process and every run
    data = TrainSet.from_dataset(
        config.dataset,
        config.root,
        config.image_size,
        config.expanded,
        cache=config.cache,
        seq_len=config.seq_len,
        stride=config.sampling_stride,
        dense_step=config.dense_step,
        seed=config.seed,
    )
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
    run = prepare(config, acc, data, model, state)

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
    loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=loader_workers(config, data))
    augmentation = AUGMENTATIONS[config.augmentation]
    history = state.trainer.get("history", []) if state else []

    for epoch in range(state.epoch if state else 0, config.epochs):
        started = time.perf_counter()
        batches.set_epoch(epoch)
        data.set_epoch(epoch)  # before the workers fork: clips are drawn per (seed, epoch, item)
        for opt in (run.optimizer, run.distill_opt):  # CAL's clothes classifier keeps a constant lr
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = config.lr_at(epoch)
        if config.fine_grained_head:  # its dropout draws from torch's global RNG: reseeded so a resumed run matches
            torch.manual_seed(config.seed * 1_000_003 + epoch * 1009 + acc.process_index + 500_009)
        run.model.train()
        meter = Meter()
        name = f"epoch {epoch + 1}/{config.epochs}"
        advance = reporter.stage(name, len(loader))
        steps = len(loader)
        for step, (images, items, keys) in enumerate(loader):
            items = items.to(acc.device)
            real = real_mask(len(items), paired, acc.device)  # paired batches: reals, then one partner each
            seeds = [draw_seed(config.seed, epoch, key) for key in keys.tolist()]
            x = augment(images.to(acc.device), seeds, augmentation)
            progress = (epoch + step / steps) / config.epochs  # global step / total steps (module docstring)
            meter.add(train_step(run, x, items, real, epoch, progress), len(items))
            advance(1)
        reporter.done(name)
        record = {"epoch": epoch + 1, **meter.means(acc), "lr": config.lr_at(epoch)}
        record["variant_pool"] = config.progressive().fraction(epoch) if paired else None
        record["seconds"] = round(time.perf_counter() - started, 3)
        record["images_per_s"] = round(meter.images * acc.num_processes / max(record["seconds"], 1e-9), 1)
        if config.eval_every and (epoch + 1) % config.eval_every == 0 and acc.is_main_process:
            record["val"] = validate(acc.unwrap_model(run.model), config.dataset, val_splits, data.root)
        history.append(record)
        if acc.is_main_process:
            saved = _save_epoch(out, run, reid_cfg, epoch + 1, history)
            if config.keep_best and record.get("val"):
                keep_if_best(out, saved, history)
        acc.wait_for_everyone()
    if acc.is_main_process:  # drawn once per call, not per epoch: matplotlib costs ~0.7 s, a demo epoch a few s
        write_bytes_atomic(out / "training_curve.png", training_curve(history))
    return latest_checkpoint(out)


def loader_workers(config: TrainConfig, data: TrainSet) -> int:
    """DataLoader workers: none with the in-memory cache (its pixels live in this process), else as configured
    (default: up to 4, one per CPU)."""
    if data.cache:
        return 0
    return config.num_workers if config.num_workers is not None else min(4, os.cpu_count() or 1)


def prepare(config: TrainConfig, acc, data: TrainSet, model: ReIDModel, state: CheckpointState | None) -> TrainingState:
    """Optimizers (Adam; CAL's clothes classifier and the distillation heads have their own), restored from `state`
    when resuming; the frozen teachers of the related methods."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state.optimizers["model"])
    model, optimizer = acc.prepare(model, optimizer)
    run = TrainingState(config, acc, data, model, optimizer)
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
    run: TrainingState, x: torch.Tensor, items: torch.Tensor, real: torch.Tensor, epoch: int, progress: float = 0.0
) -> dict[str, float]:
    """One step. Identity + triplet losses on all images; CAL's clothes losses on the real images only; the related
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
        weight = config.generated_label_weight(progress)
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
    loss_tri = run.triplet_loss(bn_feature if config.triplet_distance == "cosine" else feature, pids)
    loss = loss + config.triplet_weight * loss_tri
    out |= {"loss_id": loss_id.item(), "loss_triplet": loss_tri.item()}
    out["acc_id"] = (logits.argmax(1) == pids).float().mean().item()
    if outputs.fine_logits is not None:  # DG-Net fine-grained mining: structure identity, generated images only
        weight = config.fine_grained_weight * config.generated_label_weight(progress)
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


def _save_epoch(out: Path, run: TrainingState, reid_cfg: ReIDConfig, epoch: int, history: list[dict]) -> Path:
    """`checkpoints.save_epoch` with this run's optimizers and training-only modules (saved so that a resumed run
    continues them)."""
    optimizers = {"model": run.optimizer.state_dict()}
    modules = {}
    if run.clothes_head is not None:
        optimizers["clothes"] = run.clothes_opt.state_dict()
        modules["clothes_classifier"] = run.acc.unwrap_model(run.clothes_head)
    if run.distill_heads is not None:
        optimizers["distill"] = run.distill_opt.state_dict()
        modules["distill"] = run.acc.unwrap_model(run.distill_heads)
    return save_epoch(
        out,
        run.acc.unwrap_model(run.model),
        reid_cfg,
        epoch,
        history,
        label_maps=run.data.maps.to_dict(),
        optimizers=optimizers,
        modules=modules,
        fingerprint=run.config.fingerprint(),
        keep=run.config.keep_checkpoints,
        keep_every=run.config.keep_every,
    )
