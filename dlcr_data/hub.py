"""Publishing a build: the out folder *is* the dataset repository.

`push_to_hub` verifies the build against its manifest, renders the card (`dlcr_data.cards`), then uploads exactly the
files `upload_files` selects (`work/` caches and source images stay local unless asked) with `upload_folder`, which
resumes when rerun. `--dry-run` stages that same tree and loads every config and split back with `load_dataset`.
`--include-source` first writes the original images as source shards (`write_source_shards`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dlcr_data import loaders
from dlcr_data.cards import CARD_FILE, PREVIEW_FILE, render_card
from dlcr_data.cards.context import shard_metas
from dlcr_data.errors import UserError
from dlcr_data.manifest import (
    MANIFEST_FILE,
    SOURCE_SUFFIX,
    load_cache_dir,
    read_manifest,
    samples_per_split,
    source_root,
    verify_build,
)

UPLOAD_ALLOW = [CARD_FILE, MANIFEST_FILE, PREVIEW_FILE, "*/*.tar"]
UPLOAD_IGNORE = ["work/*", ".*", "*/.*"]
LICENCE_WARNING = (
    "warning: --include-source uploads the ORIGINAL images of licence-gated datasets; make sure their licences "
    "allow you to redistribute them (most do not)."
)


def upload_files(out: Path, include_source: bool = False) -> list[str]:
    """The repo-relative paths `push-to-hub` uploads (and `--dry-run` stages): the same filter `upload_folder` uses."""
    from huggingface_hub.utils import filter_repo_objects

    out = Path(out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return list(filter_repo_objects(files, allow_patterns=UPLOAD_ALLOW, ignore_patterns=_ignore(include_source)))


def _ignore(include_source: bool) -> list[str]:
    return UPLOAD_IGNORE if include_source else [*UPLOAD_IGNORE, f"*{SOURCE_SUFFIX}/*"]


# -- source images (only on request) ----------------------------------------------------------------------------
def write_source_shards(out: Path, shard_samples: int = 1000) -> list[Path]:
    """`<dataset>-source/<split>-NNNNN.tar` with the original image bytes and record of every source image the
    dataset's shards hold variants of (their `source_key`s), in the loader's order.

    Needs the originals: a build without a recorded source root (an `import-release` without --root) is refused
    with a one-line error, before any source shard is written."""
    from dlcr_data.build.shards import ShardWriter

    out = Path(out)
    chosen = []
    for name, entry in sorted(read_manifest(out)["builds"].items()):
        root = source_root(out, name, entry)
        if root is None:
            raise UserError(
                f"--include-source: no source root is recorded for {name} in {out / 'work' / name}; rerun its "
                f"build (or import-release with --root) with the original images"
            )
        keys: dict[str, set[str]] = {s["split"]: set() for s in entry["shards"]}
        for split, meta in shard_metas(out, entry):
            keys[split].add(meta["source_key"])
        loaded = loaders.load(name, root)
        records = {split: [r for r in loaded[split] if r.key in wanted] for split, wanted in keys.items()}
        lost = sorted(k for split, wanted in keys.items() for k in wanted - {r.key for r in records[split]})
        if lost:
            raise UserError(f"--include-source: {len(lost)} source images of {name} are not under {root}: {lost[0]}")
        chosen.append((name, loaded.root, records))
    written = []
    for name, root, records in chosen:
        for split, split_records in records.items():
            for index, start in enumerate(range(0, len(split_records), shard_samples)):
                relpath = f"{name}{SOURCE_SUFFIX}/{split}-{index:05d}.tar"
                with ShardWriter(out, relpath, split) as writer:
                    for r in split_records[start : start + shard_samples]:
                        ext = Path(r.image_path).suffix.lower().lstrip(".").replace("jpeg", "jpg")
                        meta = {k: v for k, v in r.to_dict().items() if k != "frames"}
                        sample = {"__key__": r.key, ext: (root / r.image_path).read_bytes()}
                        writer.write(sample | {"json": json.dumps(meta, sort_keys=True).encode()})
                    written.append(out / writer.close().path)
    return written


# -- staging, validation, push ----------------------------------------------------------------------------------
def stage(out: Path, dest: Path, include_source: bool = False) -> Path:
    """Copy (hard-link where possible) exactly the files that would be uploaded into `dest`."""
    out, dest = Path(out), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    for rel in upload_files(out, include_source):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(out / rel, target)
        except OSError:
            shutil.copy2(out / rel, target)
    return dest


def validate_staged(staged: Path, manifest: dict) -> dict[str, dict[str, int]]:
    """`load_dataset` every config and split of the staged tree, with the manifest's row counts; load the card."""
    import datasets
    from huggingface_hub import DatasetCard

    DatasetCard.load(Path(staged) / CARD_FILE)
    datasets.disable_progress_bars()  # one table at the end says it all
    counts: dict[str, dict[str, int]] = {}
    for name, entry in sorted(manifest["builds"].items()):
        counts[name] = {}
        for split, n in samples_per_split(entry).items():
            ds = datasets.load_dataset(str(staged), name, split=split, cache_dir=str(load_cache_dir(staged)))
            if ds.num_rows != n:
                raise UserError(f"staged {name}/{split} loads {ds.num_rows} rows, the manifest says {n}")
            counts[name][split] = n
    return counts


@dataclass
class PushResult:
    repo_id: str
    files: list[str]
    staged: Path | None = None
    counts: dict | None = None
    commit_url: str | None = None


def push_to_hub(
    out: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    include_source: bool = False,
    stage_dir: Path | None = None,
    api=None,
) -> PushResult:
    """Verify, render the card, then upload (or, with `dry_run`, stage and validate) the build in `out`."""
    out = Path(out)
    manifest = verify_build(out)  # before anything is uploaded
    if include_source:
        write_source_shards(out)
    render_card(out, repo_id, include_source)
    files = upload_files(out, include_source)
    if dry_run:
        staged = stage(out, stage_dir or out.parent / f"{out.name}.staged", include_source)
        return PushResult(repo_id, files, staged, validate_staged(staged, manifest))

    from huggingface_hub import HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise UserError(
            "cannot push while offline (HF_HUB_OFFLINE=1); unset it, or use --dry-run to stage and validate"
        )
    if api is None:
        if not get_token():
            raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then rerun push-to-hub")
        api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(out),
        revision=revision,
        allow_patterns=UPLOAD_ALLOW,
        ignore_patterns=_ignore(include_source),
        commit_message=f"Upload DLCR-expanded {', '.join(sorted(manifest['builds']))} ({manifest.get('tool', '')})",
    )
    return PushResult(repo_id, files, commit_url=getattr(info, "commit_url", None))
