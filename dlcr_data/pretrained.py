"""Loading models by HF id or local folder, with one clear error when neither works, and what a build records.

Every backend loads through `load_pretrained`, and a build checks every model reference with `model_record` before
any work starts, so a typo'd id, a missing folder or an offline machine gives one line (what, and what to do).

What is published never holds a local path: a Hub model is recorded as its id and commit; a local folder as a hash
of its weight files (`weights_hash`), plus the Hub commit when `hf download --local-dir` metadata in the folder
vouches for every weight file. A published sample names its model `published_ref(ref)`: the Hub id, or
`local:<weights hash>`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dlcr_data.errors import UserError

T = TypeVar("T")
LOCAL_PREFIX = "local:"  # a published sample's `model` for a local folder: "local:<weights hash>"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")
HASH_CHARS = 16  # hex digits kept of the weights hash
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # "org/name"; a bare "name" (e.g. "gpt2") has no separator at all
_CHUNK = 1 << 20
_DOWNLOAD_METADATA = Path(".cache", "huggingface", "download")  # where `hf download --local-dir` records files


class ModelNotFound(UserError):
    """A model reference is neither a local folder nor loadable from the Hub."""


def _unreachable(ref: str, option: str, why: str) -> ModelNotFound:
    return ModelNotFound(
        f"{option} {ref!r} is neither a local folder nor reachable on the Hub ({why}); "
        f"download it elsewhere (e.g. `hf download {ref} --local-dir DIR`) and pass {option} DIR"
    )


def looks_like_path(ref: str) -> bool:
    """`ref` names a folder, not a Hub id: absolute, `~`, `./` or `../`, more than one `org/name` separator, or an
    `org/name` whose `org` is a local folder (a mistyped path beside it)."""
    if ref in (".", "..") or ref.startswith(("~", "./", "../")) or Path(ref).is_absolute():
        return True
    separators = [s for s in (os.sep, os.altsep) if s]
    if not any(s in ref for s in separators):
        return False
    return not HUB_ID.fullmatch(ref) or Path(ref.split("/")[0]).is_dir()


def _local(ref: str, option: str) -> Path | None:
    """The folder `ref` names, None if it is a Hub id; a file, or a path that does not exist, is an error."""
    local = Path(ref).expanduser()
    if local.exists() and not local.is_dir():
        raise ModelNotFound(f"{option} {ref}: is a file; pass a folder made by save_pretrained or a Hub model id")
    if local.is_dir():
        return local
    if looks_like_path(ref):
        raise ModelNotFound(f"{option}: no such folder: {ref}")
    return None


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


# -- provenance: what a build records of each model ------------------------------------------------------------
def model_record(ref: str, option: str) -> dict:
    """What a build records of model `ref` (checked as `check_ref` does; no absolute path in it).

    A Hub id: `{"id", "revision"}` (the commit). A local folder: `{"id": None, "revision", "weights", "local": True}`
    with `weights` its `weights_hash` and `revision` the Hub commit its `hf download` metadata vouches for (None
    without); `hf download` records the commit, not the repo id, so the id stays unknown. `named_in_config` is the
    Hub-id-shaped `_name_or_path` of its config.json, when there is one: the checkpoint the weights were saved
    from, often a base model, so a hint, never taken for the id."""
    local = _local(ref, option)
    if local is None:
        return {"id": ref, "revision": check_ref(ref, option)}
    record = {"id": None, "revision": downloaded_commit(local), "weights": weights_hash(local), "local": True}
    named = _named_in_config(local)
    return record | ({"named_in_config": named} if named else {})


@functools.lru_cache(maxsize=64)
def published_ref(ref: str | None) -> str:
    """How a published sample names model `ref`: a Hub id as is, a local folder as `local:<weights hash>`.

    Cached per reference (every sample of a build asks): a folder's weights must not change during a build."""
    if not ref:
        return ""
    local = Path(ref).expanduser()
    return f"{LOCAL_PREFIX}{weights_hash(local)}" if local.is_dir() else ref


def weights_hash(folder: Path) -> str:
    """The first `HASH_CHARS` hex digits of the SHA-256 of the `sha256sum` listing (`<file sha256>  <path>` lines)
    of the folder's weight files (`WEIGHT_SUFFIXES`), sorted by relative path, hidden files and folders left out."""
    folder = Path(folder)
    weights = [rel for rel in _files(folder) if rel.endswith(WEIGHT_SUFFIXES)]
    listing = "".join(f"{_file_sha256(folder / rel)}  {rel}\n" for rel in weights)
    return hashlib.sha256(listing.encode()).hexdigest()[:HASH_CHARS]


def downloaded_commit(folder: Path) -> str | None:
    """The Hub commit `hf download --local-dir` metadata records for `folder`, when it vouches for its content:
    every weight file has metadata, every file with metadata still has the downloaded bytes (its etag: the sha256
    of an LFS file, the git blob sha1 of any other) and all name one commit."""
    folder = Path(folder)
    commits = set()
    for rel in _files(folder):
        meta = _download_metadata(folder, rel)
        if meta is None:
            if rel.endswith(WEIGHT_SUFFIXES):
                return None  # a weight file the download did not write
            continue
        commit, etag = meta
        if etag != (_file_sha256(folder / rel) if len(etag) == 64 else _git_blob_sha1(folder / rel)):
            return None  # changed since it was downloaded
        commits.add(commit)
    return commits.pop() if len(commits) == 1 else None


def _files(folder: Path) -> list[str]:
    """Every file under `folder` (relative POSIX paths, sorted), none inside a hidden folder (`.cache`, `.git`)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath).relative_to(folder)
        found += [(base / name).as_posix() for name in filenames if not name.startswith(".")]
    return sorted(found)


def _download_metadata(folder: Path, rel: str) -> tuple[str, str] | None:
    """(commit, etag) from `DIR/.cache/huggingface/download/<rel>.metadata` (lines: commit, etag, timestamp)."""
    try:
        lines = (folder / _DOWNLOAD_METADATA / f"{rel}.metadata").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return (lines[0].strip(), lines[1].strip()) if len(lines) >= 2 else None


def _named_in_config(folder: Path) -> str | None:
    try:
        name = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and HUB_ID.fullmatch(name) else None


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """Streamed; cached per (file, size, mtime): the check and every published sample hash a folder once."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)  # the Hub's etag of a file stored in git, not LFS
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
