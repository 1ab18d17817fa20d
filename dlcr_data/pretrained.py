"""Loading models by HF id or local folder, with one clear error when neither works.

Every backend loads through `load_pretrained`, and a build checks every model reference with `check_ref` before
any work starts, so a typo'd id or an offline machine gives one line (what, and how to pass a local path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dlcr_data.errors import UserError

T = TypeVar("T")


class ModelNotFound(UserError):
    """A model reference is neither a local folder nor loadable from the Hub."""


def _unreachable(ref: str, option: str, why: str) -> ModelNotFound:
    return ModelNotFound(
        f"{option} {ref!r} is neither a local folder nor reachable on the Hub ({why}); "
        f"download it elsewhere (e.g. `hf download {ref} --local-dir DIR`) and pass {option} DIR"
    )


def _local(ref: str, option: str) -> Path | None:
    """The folder `ref` names, None if it names none; a file is an error."""
    local = Path(ref).expanduser()
    if local.exists() and not local.is_dir():
        raise ModelNotFound(f"{option} {ref}: is a file; pass a folder made by save_pretrained or a Hub model id")
    return local if local.is_dir() else None


def load_pretrained(loader: Callable[..., T], ref: str, option: str, **kwargs) -> T:
    """`loader(ref, **kwargs)` (a `from_pretrained`); unloadable refs become `ModelNotFound` naming `option`."""
    local = _local(ref, option)
    kwargs.setdefault("trust_remote_code", False)
    try:
        return loader(str(local) if local else ref, **kwargs)
    except (OSError, ValueError) as err:  # HF raises OSError subclasses for missing/offline repos
        if local:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ModelNotFound(f"{option} {ref}: local folder could not be loaded ({reason})") from err
        raise _unreachable(ref, option, "offline or unknown id") from err


def check_ref(ref: str, option: str, revision: str | None = None) -> str:
    """A local folder, or a Hub id whose config files can be fetched (from the cache when offline).

    Returns the revision that will be used: the Hub commit hash, or "local folder"."""
    if _local(ref, option):
        return "local folder"
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(ref, revision=revision, allow_patterns=["*.json"])
    except Exception as err:  # offline, unknown id, gated repo, no network: all mean "cannot use this ref"
        raise _unreachable(ref, option, type(err).__name__) from err
    return Path(snapshot).name  # .../snapshots/<commit hash>


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str):
    """bf16 on GPU (fp16 random weights overflow more easily), fp32 on CPU."""
    import torch

    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def load_clip(ref: str, option: str, **kwargs):
    """A `CLIPModel` by HF id or folder; any other architecture is refused (`CLIPModel.from_pretrained` would load
    it with random CLIP weights and only warn). Safetensors weights only: nothing is unpickled."""
    from transformers import AutoConfig, CLIPModel

    config = load_pretrained(AutoConfig.from_pretrained, ref, option)
    if config.model_type != "clip":
        raise UserError(f"{option} {ref}: a {config.model_type!r} model, not CLIP; pass a CLIP model (id or folder)")
    return load_pretrained(CLIPModel.from_pretrained, ref, option, use_safetensors=True, **kwargs)


def pooled_features(out):
    """(B, D) from a model output: a tensor as is, else `pooler_output` flattened (transformers 5's
    `get_image_features` / `get_text_features` put the projected embedding there), else the mean over positions."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.flatten(1)
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)  # ResNet's is (B, C, 1, 1)
    hidden = out.last_hidden_state
    return hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)
