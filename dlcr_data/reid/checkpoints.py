"""Checkpoint folders and a training run's out folder: write, load, find the newest, claim the folder.

A checkpoint is a folder: `model.safetensors` + `config.json` (+ `trainer_state.json`, `optimizer.safetensors`,
`<module>.safetensors`), each written atomically; loading reads safetensors and JSON only, never pickle. A run's
out folder holds:

    train_config.json        what the run depends on (a rerun with another config is refused)
    checkpoints/epoch-NNNN/  one checkpoint per kept epoch (`keep_checkpoints`, `keep_every`)
    history.json             per-epoch losses, accuracies, learning rate, timing
    training_curve.png
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from dlcr_data.errors import UserError
from dlcr_data.files import write_bytes_atomic, write_json_atomic
from dlcr_data.reid.model import ReIDConfig, ReIDModel

CHECKPOINT_FORMAT = "dlcr-data/reid-checkpoint/1"
CONFIG_FILE = "train_config.json"


# -- one checkpoint folder ---------------------------------------------------------------------------------------
def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors through `files.write_bytes_atomic` (readers never see half a file)."""
    write_bytes_atomic(Path(path), save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))


def optimizer_tensors(optimizer_state: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors (for safetensors) and the JSON-able rest."""
    tensors, scalars = {}, {}
    for idx, per_param in optimizer_state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": optimizer_state["param_groups"], "scalars": scalars}


def optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict, prefix: str) -> dict:
    """The inverse of `optimizer_tensors`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        head, idx, name = key.split(".", 2)
        if head == prefix:
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass
class CheckpointState:
    """What `load_checkpoint` returns besides the model: trainer state and, on request, training tensors."""

    epoch: int = 0
    label_maps: dict = field(default_factory=dict)  # {"pids": [raw pid per label], "clothes": [...]}
    trainer: dict = field(default_factory=dict)  # trainer_state.json as written
    optimizers: dict[str, dict] = field(default_factory=dict)  # name -> optimizer state_dict
    modules: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # name -> state_dict


def save_checkpoint(
    folder: str | os.PathLike,
    model: ReIDModel,
    config: ReIDConfig,
    *,
    epoch: int,
    label_maps: dict | None = None,
    optimizers: dict[str, dict] | None = None,
    modules: dict[str, nn.Module] | None = None,
    trainer_state: dict | None = None,
) -> Path:
    """Write a checkpoint folder; every file atomically. `optimizers`: name -> state_dict; `modules`: extra
    modules (e.g. "clothes_classifier") saved as `<name>.safetensors`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors_atomic(model.state_dict(), folder / "model.safetensors")
    for name, module in (modules or {}).items():
        save_safetensors_atomic(module.state_dict(), folder / f"{name}.safetensors")
    opt_tensors, opt_meta = {}, {}
    for name, state in (optimizers or {}).items():
        tensors, opt_meta[name] = optimizer_tensors(state, name)
        opt_tensors.update(tensors)
    if optimizers:
        save_safetensors_atomic(opt_tensors, folder / "optimizer.safetensors")
    write_json_atomic(
        folder / "config.json",
        {"format": CHECKPOINT_FORMAT, "reid": config.to_dict(), "backbone": model.backbone_config()},
    )
    state = {
        **(trainer_state or {}),
        "epoch": epoch,
        "label_maps": label_maps or {},
        "optimizers": opt_meta,
        "modules": sorted(modules or {}),
    }
    write_json_atomic(folder / "trainer_state.json", state)  # last: its presence marks a complete checkpoint
    return folder


def load_checkpoint(
    folder: str | os.PathLike, device: str | torch.device = "cpu", *, training: bool = False
) -> tuple[ReIDModel, ReIDConfig, CheckpointState]:
    """(model in eval mode on `device`, its config, its state). Reads safetensors + JSON only (no pickle), so an
    untrusted checkpoint cannot run code. `training=True` also loads optimizer and extra-module tensors."""
    folder = Path(folder)
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        raise UserError(f"{folder}: not a re-ID checkpoint (needs model.safetensors and config.json)")
    meta = json.loads((folder / "config.json").read_text())
    config = ReIDConfig.from_dict(meta["reid"])
    model = ReIDModel(config, backbone_config=meta["backbone"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    model.to(device).eval()
    trainer_path = folder / "trainer_state.json"
    trainer = json.loads(trainer_path.read_text()) if trainer_path.is_file() else {}
    state = CheckpointState(trainer.get("epoch", 0), trainer.get("label_maps", {}), trainer)
    if training:
        for name in trainer.get("modules", []):
            state.modules[name] = load_file(str(folder / f"{name}.safetensors"))
        if trainer.get("optimizers"):
            tensors = load_file(str(folder / "optimizer.safetensors"))
            state.optimizers = {
                name: optimizer_state_dict(tensors, opt_meta, name) for name, opt_meta in trainer["optimizers"].items()
            }
    return model, config, state


# -- a training run's out folder -----------------------------------------------------------------------------------
def check_out(out: Path, fingerprint: dict, overwrite: bool) -> None:
    """Refuse to continue a run in `out` made with another config (its `TrainConfig.fingerprint()`), unless
    `overwrite`. Every process checks, so all of them stop together."""
    path = out / CONFIG_FILE
    if overwrite or not path.is_file():
        return
    previous = json.loads(path.read_text())
    if previous != fingerprint:
        changed = sorted(k for k in previous.keys() | fingerprint.keys() if previous.get(k) != fingerprint.get(k))
        raise UserError(
            f"{out} holds a run with another config (differs in: {', '.join(changed)}); "
            "use another --out, or --overwrite to start afresh"
        )


def claim_out(out: Path, fingerprint: dict, overwrite: bool) -> None:
    """Main process: with `overwrite`, clear an earlier run; record the config's fingerprint."""
    if overwrite:
        for name in ("checkpoints", "history.json", "training_curve.png", CONFIG_FILE):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    write_json_atomic(out / CONFIG_FILE, fingerprint)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint (its trainer_state.json is written last)."""
    folder = Path(out) / "checkpoints"
    done = sorted(p for p in folder.glob("epoch-*") if (p / "trainer_state.json").is_file()) if folder.is_dir() else []
    return done[-1] if done else None


def save_epoch(
    out: Path,
    model: ReIDModel,
    reid_cfg: ReIDConfig,
    epoch: int,
    history: list[dict],
    *,
    label_maps: dict,
    optimizers: dict[str, dict],
    modules: dict[str, nn.Module],
    fingerprint: dict,
    keep: int,
    keep_every: int = 0,
) -> Path:
    """Checkpoint `epoch` into a temp folder renamed into place (atomic), keep the `keep` newest and every
    `keep_every`-th epoch, write the history."""
    folder = out / "checkpoints"
    final = folder / f"epoch-{epoch:04d}"
    tmp = folder / f".epoch-{epoch:04d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(
        tmp,
        model,
        reid_cfg,
        epoch=epoch,
        label_maps=label_maps,
        optimizers=optimizers,
        modules=modules,
        trainer_state={"history": history, "train_config": fingerprint},
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(folder.glob("epoch-*"))[: -max(keep, 1)]:
        if not (keep_every and int(old.name.removeprefix("epoch-")) % keep_every == 0):
            shutil.rmtree(old, ignore_errors=True)
    write_json_atomic(out / "history.json", history)
    return final
