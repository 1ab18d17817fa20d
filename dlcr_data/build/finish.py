"""The last stage: this dataset's manifest entry (written last, atomically, by the main process), then the card.

The out folder is the dataset repo: once the card is written, `load_dataset(out, dataset)` works right away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlcr_data.build.shards import ShardResult
from dlcr_data.manifest import write_entry

if TYPE_CHECKING:
    from dlcr_data.build.annotate.body_shape import BodyShapes
    from dlcr_data.build.context import BuildContext


def run(ctx: BuildContext, results: list[ShardResult], num_outfits: int, shapes: BodyShapes | None) -> dict:
    """Main process: this dataset's manifest entry, merged into OUT/manifest.json; returns the entry."""
    entry = _manifest_entry(ctx, results, num_outfits, shapes)
    if ctx.main():
        from dlcr_data.cards import render_card

        write_entry(ctx.out, ctx.opts.dataset, entry)
        (ctx.out / "preview.png").unlink(missing_ok=True)  # shows the first dataset's first split: redraw it
        render_card(ctx.out)
    ctx.state.wait_for_everyone()
    return entry


def _manifest_entry(ctx: BuildContext, results: list[ShardResult], num_outfits: int, shapes: BodyShapes | None) -> dict:
    """Options, models, shards, totals, what was skipped and, when on, the gate, clusters and body shapes."""
    opts = ctx.opts
    shard_skips = [{"path": s.path, "reason": s.reason, "stage": "generate"} for r in results for s in r.skipped]
    per_split: dict[str, dict] = {}
    for r in results:
        t = per_split.setdefault(r.split, {"shards": 0, "samples": 0, "bytes": 0})
        t["shards"], t["samples"], t["bytes"] = t["shards"] + 1, t["samples"] + r.samples, t["bytes"] + r.bytes
    entry = {
        "complete": True,
        "config": opts.fingerprint(),
        "models": ctx.models,
        "source_root": str(ctx.root),
        "outfits": num_outfits,
        "shards": [{k: v for k, v in r.to_dict().items() if k not in ("skipped", "rejected")} for r in results],
        "totals": {
            "shards": len(results),
            "samples": sum(r.samples for r in results),
            "bytes": sum(r.bytes for r in results),
            "splits": per_split,
        },
        "skipped": ctx.skipped + shard_skips,
    }
    if opts.identity_gate:
        from dlcr_data.build.annotate.gate import DEFAULT_THRESHOLD

        rejected = [x for r in results for x in r.rejected]
        entry["gate"] = {
            "model": opts.identity_gate,
            "threshold": DEFAULT_THRESHOLD if opts.gate_threshold is None else opts.gate_threshold,
            "kept": entry["totals"]["samples"],
            "rejected": len(rejected),
            "rejections": rejected,
        }
    if ctx.clusters is not None:
        entry["outfit_clusters"] = ctx.clusters
    if shapes is not None:
        entry["body_shape"] = shapes.summary({r.key: r.pid for split in opts.splits for r in ctx.loaded[split]})
    return entry
