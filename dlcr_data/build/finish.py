"""The last stage: this dataset's manifest entry (written last, atomically, by the main process), then the card.

The out folder is the dataset repo: once the card is written, `load_dataset(out, dataset)` works right away.
`import-release` finishes with the same pieces: `shard_rows`, `totals`, `published_config`, `refuse_empty`
and `publish`.
"""

from __future__ import annotations

from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from dlcr_data.build.backends import option_field
from dlcr_data.build.parse import LABEL_MAP_FILE
from dlcr_data.build.sample import published_method
from dlcr_data.build.shards import ShardResult
from dlcr_data.errors import UserError
from dlcr_data.manifest import read_json, record_source_root, write_entry
from dlcr_data.pretrained import published_ref

if TYPE_CHECKING:
    from dlcr_data.build.annotate.body_shape import BodyShapes
    from dlcr_data.build.context import BuildContext, OutFolder


def run(ctx: BuildContext, results: list[ShardResult], num_outfits: int, shapes: BodyShapes | None) -> dict:
    """Main process: this dataset's manifest entry, merged into OUT/manifest.json; returns the entry.

    A build without a single sample is no dataset: a one-line UserError says why, and no entry is written
    (`refuse_empty`: the work/ caches made so far stay, so nothing done is lost)."""
    entry = _manifest_entry(ctx, results, num_outfits, shapes)
    if entry["totals"]["samples"] == 0:
        why = _why_empty(ctx, entry)
        message = f"{ctx.opts.dataset}: the build produced no samples, so no manifest entry was written; {why}"
        raise refuse_empty(ctx.folder, results, message)
    publish(ctx.folder, entry, ctx.root)  # the source root: a local fact, beside the caches, not published
    return entry


def publish(folder: OutFolder, entry: dict, root: Path | None) -> None:
    """Main process: the source root (None: none read) beside the caches, the entry merged into OUT/manifest.json,
    then the card; every process waits for it."""
    if folder.main():
        from dlcr_data.cards import render_card

        record_source_root(folder.out, folder.dataset, root)
        write_entry(folder.out, folder.dataset, entry)
        (folder.out / "preview.png").unlink(missing_ok=True)  # shows the first dataset's first split: redraw it
        render_card(folder.out)
    folder.state.wait_for_everyone()


def refuse_empty(folder: OutFolder, results: list[ShardResult], message: str) -> UserError:
    """The error for a build or import without a single sample, once its shards are gone: no entry lists them, and
    push-to-hub's `*/*.tar` would upload them. The work/ caches (shard records included) stay: a rerun continues."""
    folder.state.wait_for_everyone()  # every process has read the shard records
    if folder.main():
        for r in results:
            (folder.out / r.path).unlink(missing_ok=True)
        with suppress(OSError):  # the dataset's folder, when nothing else is in it
            folder.shards.rmdir()
    folder.state.wait_for_everyone()
    return UserError(message)


def shard_rows(results: list[ShardResult]) -> list[dict]:
    """The manifest's `shards`: each shard's path, split, samples, bytes and sha256 (its skips are listed apart)."""
    return [{k: v for k, v in r.to_dict().items() if k not in ("skipped", "rejected")} for r in results]


def totals(results: list[ShardResult]) -> dict:
    """The manifest's `totals`: shards, samples and bytes, overall and per split."""
    per_split: dict[str, dict] = {}
    for r in results:
        t = per_split.setdefault(r.split, {"shards": 0, "samples": 0, "bytes": 0})
        t["shards"], t["samples"], t["bytes"] = t["shards"] + 1, t["samples"] + r.samples, t["bytes"] + r.bytes
    return {
        "shards": len(results),
        "samples": sum(r.samples for r in results),
        "bytes": sum(r.bytes for r in results),
        "splits": per_split,
    }


def _manifest_entry(ctx: BuildContext, results: list[ShardResult], num_outfits: int, shapes: BodyShapes | None) -> dict:
    """Options, models, shards, totals, what was skipped and, when on, the gate, clusters and body shapes."""
    opts = ctx.opts
    shard_skips = [{"path": s.path, "reason": s.reason, "stage": "generate"} for r in results for s in r.skipped]
    entry = {
        "complete": True,
        "config": published_config(opts.fingerprint(), ctx.models),
        "models": ctx.models,
        "label_map": read_json(ctx.work / LABEL_MAP_FILE),  # the parser's label -> garment class (null: none)
        "outfits": num_outfits,
        "shards": shard_rows(results),
        "totals": totals(results),
        "skipped": ctx.skipped + shard_skips,
    }
    if opts.identity_gate:
        from dlcr_data.build.annotate.gate import DEFAULT_THRESHOLD, GATE_RULE

        rejected = [x for r in results for x in r.rejected]
        entry["gate"] = {
            "model": published_ref(opts.identity_gate),
            "rule": GATE_RULE,  # which keep/reject rule decided (none recorded: test labels decided, before issue 11)
            "threshold": DEFAULT_THRESHOLD if opts.gate_threshold is None else opts.gate_threshold,
            "kept": entry["totals"]["samples"],
            "rejected": len(rejected),
            "rejections": rejected,
        }
    if ctx.clusters is not None:
        entry["outfit_clusters"] = ctx.clusters
    if shapes is not None:
        summary = shapes.summary({r.key: r.pid for split in opts.splits for r in ctx.loaded[split]})
        entry["body_shape"] = summary | {"method": published_method(summary["method"])}
    return entry


def published_config(config: dict, models: dict[str, dict] | None = None) -> dict:
    """A build's or an import's options (`fingerprint()`) as the manifest publishes them: no local path. The source
    root is left out (kept in `OUT/work/`), a model option naming a local folder holds `local:<weights hash>`
    (`published_ref`) and an imported release is named by its file or folder name."""
    published = {k: v for k, v in config.items() if k != "root"}
    for option in models or {}:
        name = option_field(option)
        if published.get(name) is not None:
            published[name] = published_ref(published[name])
    if published.get("release") is not None:
        published["release"] = Path(published["release"]).name
    return published


def _why_empty(ctx: BuildContext, entry: dict) -> str:
    """The most common reasons the sources gave no sample, each with its first full reason, e.g. "16 skipped at
    plan, e.g. no target outfit: the training pool holds no outfit but its own (1_1)"."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s in entry["skipped"]:
        groups.setdefault((s["stage"], s["reason"].split(":")[0]), []).append(s["reason"])
    counts = Counter({group: len(reasons) for group, reasons in groups.items()})
    parts = [f"{n} skipped at {stage}, e.g. {groups[stage, kind][0]}" for (stage, kind), n in counts.most_common(3)]
    if entry.get("gate", {}).get("rejected"):
        parts.append(f"{entry['gate']['rejected']} rejected by the identity gate")
    return "; ".join(parts) or f"no source image in split {', '.join(ctx.opts.splits)}"
