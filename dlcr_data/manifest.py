"""The build manifest, `OUT/manifest.json`: what a build wrote, written last; read and verified downstream.

One entry per dataset under `builds` (several datasets can share an out folder): the options that determine the
bytes, the models with their revisions, every shard with its sample count, size and sha256, totals, and every
skipped source item with its reason. The build writes it (main process, after every shard is complete); the card,
`preview`, `push-to-hub` and `evaluate --refine` read it. Shards live in `OUT/<dataset>/`; `push-to-hub
--include-source` adds the original images as `OUT/<dataset>-source/` (not in the manifest: never built).
The manifest is published, so it holds no local path: the source root and the options as given (model folders
included) stay under `OUT/work/<dataset>/` (`source_root`, `local_config`).
"""

from __future__ import annotations

import json
from pathlib import Path

from dlcr_data import __version__
from dlcr_data.errors import UserError
from dlcr_data.files import sha256_file, write_json_atomic

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "dlcr-data/build/1"
SOURCE_SUFFIX = "-source"  # `OUT/<dataset>-source/`: original images, written and uploaded only with --include-source


def read_json(path: Path) -> dict | list | None:
    """A JSON file's content, or None when the file does not exist."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def read_manifest(out: Path) -> dict:
    path = Path(out) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("builds"), dict):
        raise UserError(f"{out} is not a finished build: no valid manifest.json; run `dlcr-data build` first")
    return manifest


def verify_build(out: Path) -> dict:
    """The manifest, once every shard it lists is on disk with its sha256 and nothing unfinished is around."""
    out = Path(out)
    manifest = read_manifest(out)
    problems: list[str] = []
    for name, entry in sorted(manifest["builds"].items()):
        if not entry.get("complete"):
            problems.append(f"the {name} build is not complete")
        listed = set()
        for shard in entry.get("shards", []):
            path = out / shard["path"]
            listed.add(path)
            if not path.is_file():
                problems.append(f"missing shard {shard['path']}")
            elif path.stat().st_size != shard["bytes"] or sha256_file(path) != shard["sha256"]:
                problems.append(f"shard {shard['path']} does not match its sha256 in manifest.json")
        problems += [
            f"shard {p.relative_to(out)} is not in manifest.json" for p in (out / name).glob("*.tar") if p not in listed
        ]
        if any((out / name).glob(".*.tmp-*")):
            problems.append(f"{name}/ holds temp files: a build is running or was interrupted")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(
            f"{out} is not a complete build: {problems[0]}{more}; rerun `dlcr-data build` with the same options"
        )
    return manifest


def samples_per_split(entry: dict) -> dict[str, int]:
    """One dataset's sample count per split, in the order its shards list the splits."""
    counts: dict[str, int] = {}
    for shard in entry["shards"]:
        counts[shard["split"]] = counts.get(shard["split"], 0) + shard["samples"]
    return counts


def write_entry(out: Path, dataset: str, entry: dict) -> None:
    """Merge one dataset's entry into `OUT/manifest.json` (atomic; other datasets' entries are kept)."""
    path = Path(out) / MANIFEST_FILE
    manifest = read_json(path) or {}
    manifest.update({"format": MANIFEST_FORMAT, "tool": f"dlcr-data {__version__}"})
    manifest.setdefault("builds", {})[dataset] = entry
    write_json_atomic(path, manifest)


def drop_entry(out: Path, dataset: str) -> None:
    """Remove one dataset's entry (its build is being replaced)."""
    path = Path(out) / MANIFEST_FILE
    manifest = read_json(path)
    if manifest and dataset in manifest.get("builds", {}):
        del manifest["builds"][dataset]
        write_json_atomic(path, manifest)


# -- local facts: what only this machine needs, kept under `OUT/work/<dataset>/` (never uploaded) ---------------
SOURCE_FILE = "source.json"  # {"root": the source root the build read}


def _work(out: Path, dataset: str) -> Path:
    return Path(out) / "work" / dataset


def record_source_root(out: Path, dataset: str, root: Path | str | None) -> None:
    """Keep the source root a build read beside its caches: a local path, so not in the published manifest."""
    write_json_atomic(_work(out, dataset) / SOURCE_FILE, {"root": None if root is None else str(root)})


def source_root(out: Path, dataset: str, entry: dict) -> str | None:
    """The source root the `dataset` build in `out` read (the preview's and `--include-source`'s originals), or
    None when this machine has no record of it (older manifests held it in the entry)."""
    recorded = read_json(_work(out, dataset) / SOURCE_FILE)
    return recorded.get("root") if isinstance(recorded, dict) else entry.get("source_root")


def local_config(out: Path, dataset: str, entry: dict) -> dict:
    """The options the `dataset` build in `out` was made with as given (`OUT/work/<dataset>/config.json`: with its
    source root and model folders, which the published `config` leaves out), else the published `config`."""
    given = read_json(_work(out, dataset) / "config.json")
    return given if isinstance(given, dict) else entry["config"]


def load_cache_dir(folder: Path) -> Path | None:
    """A `datasets` cache folder for loading the local build `folder`, keyed by the sha256s of its shards.

    `datasets` caches a local folder by its name and card, not its files: two builds in folders that share a name
    (`a/out`, `b/out`), or a rebuild with `--overwrite`, would be served the first one's rows. None when `folder`
    holds no manifest (a Hub repo id, or not a build): `datasets`' own cache is right there.
    """
    import hashlib

    import datasets

    manifest = read_json(Path(folder) / MANIFEST_FILE) if Path(folder).is_dir() else None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("builds"), dict):
        return None
    shas = sorted(s.get("sha256", "") for entry in manifest["builds"].values() for s in entry.get("shards", []))
    digest = hashlib.sha256("\n".join(shas).encode()).hexdigest()[:16]
    return Path(datasets.config.HF_DATASETS_CACHE) / "dlcr-data-builds" / digest
