"""Publishing a build: the out folder *is* the dataset repository.

`render_card` writes `README.md` (YAML `configs:` with one config per dataset and declared `dataset_info.features`,
so `load_dataset` never guesses a field) and `preview.png`. `push_to_hub` verifies the build against its manifest,
then uploads exactly the files `upload_files` selects (`work/` caches and source images stay local unless asked)
with `upload_folder`, which resumes when rerun. `--dry-run` stages that same tree and loads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dlcr_data import __version__, loaders
from dlcr_data.errors import UserError
from dlcr_data.files import write_text_atomic
from dlcr_data.manifest import read_manifest, verify_build
from dlcr_data.records import SAMPLE_SCHEMA, sample_features

CARD_TEMPLATE = Path(__file__).parent / "cards" / "dataset_card.md"
UPLOAD_ALLOW = ["README.md", "manifest.json", "preview.png", "*/*.tar"]
UPLOAD_IGNORE = ["work/*", ".*", "*/.*"]
SOURCE_SUFFIX = "-source"  # `<dataset>-source/`: original images, uploaded only with --include-source
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


# -- statistics and the card ------------------------------------------------------------------------------------
@dataclass
class SplitStats:
    split: str
    shards: int
    samples: int
    sources: int
    ids: int
    source_outfits: int
    target_outfits: int


def split_stats(out: Path, entry: dict) -> list[SplitStats]:
    """Per split, from the shards' json members (read with tarfile: no image is decoded, nothing unpickled)."""
    shards = Counter(s["split"] for s in entry["shards"])
    rows: dict[str, list[dict]] = {split: [] for split in shards}  # a split may hold no sample at all
    for shard in entry["shards"]:
        with tarfile.open(Path(out) / shard["path"]) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    rows.setdefault(shard["split"], []).append(json.load(tar.extractfile(member)))
    return [
        SplitStats(
            split,
            shards[split],
            len(metas),
            len({m["source_key"] for m in metas}),
            len({m["pid"] for m in metas}),
            len({m["source_clothes_id"] for m in metas}),
            len({m["target_clothes_id"] for m in metas}),
        )
        for split, metas in rows.items()
    ]


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def card_data(manifest: dict, include_source: bool = False):
    """The card's YAML: configs (data_files per split), declared features, licence, tags, sizes, sources."""
    from huggingface_hub import DatasetCardData

    builds = manifest["builds"]
    configs, infos = [], []
    for name, entry in sorted(builds.items()):
        splits = list(dict.fromkeys(s["split"] for s in entry["shards"]))
        configs.append({"config_name": name, "data_files": [{"split": s, "path": f"{name}/{s}-*.tar"} for s in splits]})
        infos.append(
            {"config_name": name, "features": sample_features(entry["config"]["image_format"])._to_yaml_list()}
        )
        if include_source:
            configs.append(
                {
                    "config_name": f"{name}_source",
                    "data_files": [{"split": s, "path": f"{name}{SOURCE_SUFFIX}/{s}-*.tar"} for s in splits],
                }
            )
    if len(configs) == 1:
        configs[0]["default"] = True
    total = sum(e["totals"]["samples"] for e in builds.values())
    names = sorted(builds)
    licence = {"license": "apache-2.0"}
    if _gated(names):  # generated from real people: the source datasets' terms apply
        licence = {"license": "other", "license_name": "source-dataset-terms"}
    return DatasetCardData(
        **licence,
        pretty_name=f"DLCR-expanded {', '.join(names)}",
        task_categories=["image-feature-extraction", "image-to-image"],
        tags=["person-re-identification", "clothes-changing", "synthetic", "diffusion", "data-augmentation", "dlcr"],
        size_categories=[_size_category(total)],
        source_datasets=[f"extended|{n}" for n in names],
        configs=configs,
        dataset_info=infos,
    )


def render_card(out: Path, repo_id: str = "USER/REPO", include_source: bool = False, preview_rows: int = 6) -> Path:
    """Write `OUT/README.md` (and `OUT/preview.png` if missing) from the manifest; returns the card path."""
    from huggingface_hub import DatasetCard

    from dlcr_data.cards.preview import contact_sheet
    from dlcr_data.files import save_png_atomic

    out = Path(out)
    manifest = read_manifest(out)
    preview = out / "preview.png"
    if not preview.exists():
        first = sorted(manifest["builds"])[0]
        split = manifest["builds"][first]["shards"][0]["split"]
        save_png_atomic(contact_sheet(out, n=preview_rows, dataset=first, split=split), preview)
    builds = [_card_build(out, name, entry) for name, entry in sorted(manifest["builds"].items())]
    card = DatasetCard.from_template(
        card_data(manifest, include_source),
        template_path=str(CARD_TEMPLATE),
        pretty_name=f"DLCR-expanded {', '.join(b['name'] for b in builds)}",
        tool=manifest.get("tool", f"dlcr-data {__version__}").removeprefix("dlcr-data "),
        sources_text=", ".join(b["name"] for b in builds),
        gated=_gated([b["name"] for b in builds]),
        source_note=(
            "This repository also holds the original source images (`*_source` configs), published by the uploader."
            if include_source
            else "The source images themselves are not included."
        ),
        preview="preview.png",
        builds=builds,
        repo_id=repo_id,
        fields=list(SAMPLE_SCHEMA),
        citations=[c for c in (_citation(b["name"]) for b in builds) if c],
    )
    path = out / "README.md"
    write_text_atomic(path, str(card))
    return path


def _card_build(out: Path, name: str, entry: dict) -> dict:
    reasons = Counter(s["reason"].split(":")[0] for s in entry["skipped"])
    config = entry["config"]
    shown = (
        "variants",
        "splits",
        "seed",
        "steps",
        "guidance",
        "resolution",
        "pad",
        "negative_prompt",
        "prompt_template",
        "image_format",
        "shard_samples",
        "limit",
        "captions_per_outfit",
    )
    models = entry.get("models", {})

    def model(option: str) -> str:
        m = models.get(option)
        return f"`{m['id']}` ({m['revision']})" if m else "none (no model)"

    return {
        "name": name,
        "config": config,
        "model": model,
        "body_shape": _body_shape_rows(entry.get("body_shape")),
        "gate": entry.get("gate"),
        "outfits": entry["outfits"],
        "splits": [s.__dict__ for s in split_stats(out, entry)],
        "skipped": len(entry["skipped"]),
        "skipped_reasons": ", ".join(f"{n} {r}" for r, n in reasons.most_common()),
        "settings": [(k, config.get(k)) for k in shown],
    }


CARD_IDENTITIES = 30  # body-shape rows shown in the card; manifest.json holds every identity


def _body_shape_rows(summary: dict | None) -> dict | None:
    """The card's per-identity body-shape table: top words and the number of images, first `CARD_IDENTITIES`."""
    if not summary:
        return None
    identities = sorted(summary["identities"].items(), key=lambda item: int(item[0]))
    rows = [{"pid": pid, "images": v["images"], "top": ", ".join(v["top"])} for pid, v in identities]
    return {
        "method": summary["method"],
        "vocabulary": summary["vocabulary"],
        "words": summary["words"],
        "rows": rows[:CARD_IDENTITIES],
        "more": max(0, len(rows) - CARD_IDENTITIES),
    }


def _gated(names: list[str]) -> list[str]:
    """The licence-gated sources among `names` (the dataset module's `licence_gated` trait)."""
    return [n for n in names if loaders.get(n).licence_gated]


def _citation(name: str) -> str:
    try:
        return loaders.get(name).citation
    except UserError:
        return ""


# -- source images (only on request) ----------------------------------------------------------------------------
def write_source_shards(out: Path, shard_samples: int = 1000) -> list[Path]:
    """`<dataset>-source/<split>-NNNNN.tar` with the original image bytes and record of every built source."""
    from dlcr_data.build.shards import ShardWriter

    out = Path(out)
    written = []
    for name, entry in sorted(read_manifest(out)["builds"].items()):
        loaded = loaders.load(name, entry["source_root"])
        limit = entry["config"]["limit"]
        for split in entry["config"]["splits"]:
            records = loaded[split] if limit is None else loaded[split][:limit]
            for index, start in enumerate(range(0, len(records), shard_samples)):
                relpath = f"{name}{SOURCE_SUFFIX}/{split}-{index:05d}.tar"
                with ShardWriter(out, relpath, split) as writer:
                    for r in records[start : start + shard_samples]:
                        ext = Path(r.image_path).suffix.lower().lstrip(".").replace("jpeg", "jpg")
                        meta = {k: v for k, v in r.to_dict().items() if k != "frames"}
                        sample = {"__key__": r.key, ext: (loaded.root / r.image_path).read_bytes()}
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

    DatasetCard.load(Path(staged) / "README.md")
    datasets.disable_progress_bars()  # one table at the end says it all
    counts: dict[str, dict[str, int]] = {}
    for name, entry in sorted(manifest["builds"].items()):
        expected = Counter()
        for shard in entry["shards"]:
            expected[shard["split"]] += shard["samples"]
        counts[name] = {}
        for split, n in expected.items():
            ds = datasets.load_dataset(str(staged), name, split=split)
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
