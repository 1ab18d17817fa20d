"""The card's data: a build manifest turned into plain dicts, lists, strings and numbers for `dataset_card.md`.

Nothing here writes Markdown; the template does. `card_metadata` is the YAML front matter: one config per dataset
(`data_files` per split) with its declared `dataset_info.features`, so `load_dataset` never guesses a field.
`card_context` is what the card's body shows; its statistics are read from the shards themselves.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from dlcr_data import __version__, loaders
from dlcr_data.errors import UserError
from dlcr_data.manifest import SOURCE_SUFFIX, samples_per_split
from dlcr_data.pretrained import HASH_CHARS, WEIGHT_SUFFIXES
from dlcr_data.records import SAMPLE_SCHEMA, sample_features
from dlcr_data.vocab.garments import labels_by_class

PREVIEW_FILE = "preview.png"
CARD_IDENTITIES = 30  # body-shape rows shown in the card; manifest.json holds every identity
SETTINGS_SHOWN = (  # the build options the card lists; manifest.json holds them all
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
    "variants_per_strip",  # an imported release's `--variants` and `--limit`
    "strip_limit",
)
TAGS = ["person-re-identification", "clothes-changing", "synthetic", "diffusion", "data-augmentation", "dlcr"]


@dataclass
class BuiltSplit:
    """One split of a build as its shards hold it (not a source dataset's published `loaders.SplitStats`)."""

    split: str
    shards: int
    samples: int
    sources: int
    ids: int
    source_outfits: int
    target_outfits: int


def shard_metas(out: Path, entry: dict) -> Iterator[tuple[str, dict]]:
    """(split, json) of every sample of one build's shards, in shard order, one at a time (read with tarfile: no
    image is decoded, nothing unpickled; a 1M-variant build never holds its metadata in memory at once)."""
    for shard in entry["shards"]:
        with tarfile.open(Path(out) / shard["path"]) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    yield shard["split"], json.load(tar.extractfile(member))


def built_splits(out: Path, entry: dict) -> list[BuiltSplit]:
    """Per split, counted from the shards' json members (`shard_metas`): only the distinct values are kept."""
    shards = Counter(s["split"] for s in entry["shards"])
    fields = ("source_key", "pid", "source_clothes_id", "target_clothes_id")
    samples: Counter[str] = Counter()
    seen: dict[str, dict[str, set]] = {split: {f: set() for f in fields} for split in shards}
    for split, meta in shard_metas(out, entry):
        samples[split] += 1
        for f in fields:
            seen[split][f].add(meta[f])
    return [BuiltSplit(split, shards[split], samples[split], *(len(seen[split][f]) for f in fields)) for split in seen]


def card_metadata(manifest: dict, include_source: bool = False) -> dict:
    """The card's YAML (keyword arguments of `DatasetCardData`): configs, features, licence, tags, sizes, sources."""
    builds = manifest["builds"]
    configs, infos = [], []
    for name, entry in sorted(builds.items()):
        splits = list(samples_per_split(entry))
        if not splits:  # an entry without shards: a config without data files would not load
            continue
        configs.append({"config_name": name, "data_files": [{"split": s, "path": f"{name}/{s}-*.tar"} for s in splits]})
        infos.append({"config_name": name, "features": build_features(entry["config"])._to_yaml_list()})
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
    if gated(names):  # generated from real people: the source datasets' terms apply
        licence = {"license": "other", "license_name": "source-dataset-terms"}
    return {
        **licence,
        "pretty_name": pretty_name(names),
        "task_categories": ["image-feature-extraction", "image-to-image"],
        "tags": TAGS,
        "size_categories": [size_category(total)],
        "source_datasets": [f"extended|{n}" for n in names],
        "configs": configs,
        "dataset_info": infos,
    }


def build_features(config: dict):
    """The declared features of one build: without `mask.png` where the build has no masks (an imported release)."""
    features = sample_features(config["image_format"])
    if not config.get("masks", True):
        del features["mask.png"]
    return features


def card_context(out: Path, manifest: dict, repo_id: str = "USER/REPO", include_source: bool = False) -> dict:
    """The template's variables (besides the YAML): per-build statistics, stages, models, settings, citations."""
    names = sorted(manifest["builds"])
    builds = [build_context(out, name, manifest["builds"][name]) for name in names]
    return {
        "pretty_name": pretty_name(names),
        "tool": manifest.get("tool", f"dlcr-data {__version__}").removeprefix("dlcr-data "),
        "sources": names,
        "gated": gated(names),
        "include_source": include_source,
        "preview": PREVIEW_FILE if (Path(out) / PREVIEW_FILE).exists() else None,  # None: nothing to show
        "builds": builds,
        "example": load_example(builds),
        "repo_id": repo_id,
        "fields": list(SAMPLE_SCHEMA),
        "weight_suffixes": list(WEIGHT_SUFFIXES),  # the files a local model folder's weights hash covers
        "hash_chars": HASH_CHARS,
        "citations": [c for c in (citation(n) for n in names) if c],
        # builds imported with `import-release`: DLCR's own data, credited and licensed as the release states
        "releases": [
            {"name": n, **manifest["builds"][n]["release"]} for n in names if manifest["builds"][n].get("release")
        ],
    }


def build_context(out: Path, name: str, entry: dict) -> dict:
    """One dataset's section: its split statistics, skipped items, backends with their models, and settings."""
    config = entry["config"]
    reasons = Counter(s["reason"].split(":")[0] for s in entry["skipped"])
    return {
        "name": name,
        "config": config,
        # option -> `pretrained.model_record`: {"id", "revision"} or a local folder's {"weights", "revision", ...}
        "models": entry.get("models", {}),
        "local_models": [option for option, m in entry.get("models", {}).items() if m.get("local")],
        "label_map": label_map_rows(entry.get("label_map"), config.get("mask_classes", ())),
        "body_shape": body_shape_rows(entry.get("body_shape")),
        "gate": entry.get("gate"),
        "outfits": entry.get("outfits"),  # a build: the training outfits described
        "outfit_texts": entry.get("outfit_texts"),  # an imported release: its distinct outfit texts
        "splits": [asdict(s) for s in built_splits(out, entry)],
        "skipped": len(entry["skipped"]),
        "skipped_reasons": [{"reason": r, "count": n} for r, n in reasons.most_common()],
        "settings": [(k, config[k]) for k in SETTINGS_SHOWN if k in config],
        "masks": config.get("masks", True),
        "release": entry.get("release"),  # import-release: the release's repo, licence and strip counts
    }


def load_example(builds: list[dict]) -> dict | None:
    """What the card's "How to load" code reads: the first build with a shard, its first split (name, shard count,
    masks); None when no build has one."""
    for b in builds:
        if b["splits"]:
            first = b["splits"][0]
            return {"name": b["name"], "split": first["split"], "shards": first["shards"], "masks": b["masks"]}
    return None


def label_map_rows(label_map: dict | None, mask_classes: list[str]) -> list[dict] | None:
    """The parser's label map per garment class (in `CLASSES` order, then labels without a class): the class, its
    model labels and whether the mask covers it; None for a build without one (an imported release)."""
    if not label_map:
        return None
    return [
        {"name": cls, "labels": labels, "masked": cls in mask_classes} for cls, labels in labels_by_class(label_map)
    ]


def body_shape_rows(summary: dict | None) -> dict | None:
    """The per-identity body-shape table: top words and the number of images, the first `CARD_IDENTITIES`."""
    if not summary:
        return None
    identities = sorted(summary["identities"].items(), key=lambda item: int(item[0]))
    rows = [{"pid": pid, "images": v["images"], "top": list(v["top"])} for pid, v in identities]
    return {
        "method": summary["method"],
        "vocabulary": summary["vocabulary"],
        "words": summary["words"],
        "rows": rows[:CARD_IDENTITIES],
        "more": max(0, len(rows) - CARD_IDENTITIES),
    }


def pretty_name(names: list[str]) -> str:
    return f"DLCR-expanded {', '.join(names)}"


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket of `n` samples."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def gated(names: list[str]) -> list[str]:
    """The licence-gated sources among `names` (the dataset module's `licence_gated` trait)."""
    return [n for n in names if loaders.get(n).licence_gated]


def citation(name: str) -> str:
    """The source dataset's BibTeX entry, or "" for a dataset this version does not know."""
    try:
        return loaders.get(name).citation
    except UserError:
        return ""
