"""The describe stage: one "top | bottom | shoes" text per outfit, the prompts that the plan hands to other people.

A `Describer` backend turns the images of one outfit (and their garment maps) into an `OutfitText`;
`describe_outfits` runs one over all outfits, caches each result as `<cache_dir>/<clothes_id>.json` (so a killed
run resumes), and writes `work/outfits.jsonl` sorted by clothes_id. `run` is the build's describe stage.

Backends (`DESCRIBERS`):
- `vlm` (`vlm.py`): DLCR's recipe with any transformers models, a VLM's captions summarised by an LLM.
- `color` (`color.py`): no model; names the median colour of the upper, lower and shoe pixels.
- `oracle` (`oracle.py`): the ground-truth texts a dataset ships (only the demo does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dlcr_data.build.describe.base import Describer, OutfitImages, OutfitRef, OutfitText, parse_outfit_text
from dlcr_data.build.describe.color import ColorDescriber
from dlcr_data.build.describe.oracle import OracleDescriber
from dlcr_data.build.describe.vlm import VLMDescriber
from dlcr_data.build.parse import load_garment_map
from dlcr_data.errors import UserError
from dlcr_data.files import write_text_atomic
from dlcr_data.records import Record, make_key

if TYPE_CHECKING:
    from dlcr_data.build.context import BuildContext

DESCRIBERS: dict[str, type[Describer]] = {cls.name: cls for cls in (VLMDescriber, ColorDescriber, OracleDescriber)}


# -- grouping ---------------------------------------------------------------------------------------------------
def group_outfits(
    records: Iterable[Record], root: str | Path, load_map: Callable[[str], np.ndarray]
) -> list[OutfitRef]:
    """One `OutfitRef` per (pid, clothes_id), sorted; images (a video's first frame) load only on `load()`.

    `load_map(key)` returns a record's garment map, e.g. `functools.partial(parse.load_garment_map, maps_dir)`.
    """
    root = Path(root)
    groups: dict[tuple[int, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.pid, r.clothes_id), []).append(r)
    return [
        OutfitRef(
            clothes_id,
            pid,
            tuple(r.key for r in recs),
            tuple(root / (r.frames[0] if r.frames else r.path) for r in recs),
            load_map,
        )
        for (pid, clothes_id), recs in sorted(groups.items())
        for recs in [sorted(recs, key=lambda r: r.key)]
    ]


# -- describing, cached -----------------------------------------------------------------------------------------
def cache_path(cache_dir: Path, clothes_id: str) -> Path:
    return Path(cache_dir) / f"{make_key(clothes_id)}.json"


def _cached(cache_dir: Path | None, clothes_id: str, describer: Describer) -> OutfitText | None:
    """A cached result of this outfit by the same backend and models; anything else is redone."""
    if cache_dir is None:
        return None
    path = cache_path(cache_dir, clothes_id)
    try:
        text = OutfitText.from_json(path.read_text())
    except (OSError, ValueError, TypeError):  # missing, or unreadable/old schema: redo it
        return None
    same = (text.clothes_id, text.describer, text.models) == (clothes_id, describer.name, dict(describer.models))
    return text if same else None


def describe_outfits(
    outfits: Iterable[OutfitImages | OutfitRef],
    describer: Describer,
    out_path: Path | None,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 8,
) -> list[OutfitText]:
    """Describe every outfit, resumably; write `out_path` (JSON lines sorted by clothes_id) and return the texts.

    Outfits are handled `chunk_size` at a time (an `OutfitRef` is loaded just before), each result is cached as
    `cache_dir/<clothes_id>.json` at once, and a rerun reuses cached results made by the same backend and models.
    `out_path=None` only fills the cache (one process's share of a distributed run; the main process merges).
    `progress(n)` is called with the number of outfits finished (1 each), cached ones included.
    """
    done: dict[str, OutfitText] = {}

    def finish(text: OutfitText) -> None:
        done[text.clothes_id] = text
        if progress:
            progress(1)

    def run_chunk(chunk: list[OutfitImages | OutfitRef]) -> None:
        pixels = getattr(describer, "reads_images", True)
        loaded = [o.load(pixels) if isinstance(o, OutfitRef) else o for o in chunk]
        for text in describer.describe(loaded):
            if cache_dir is not None:
                write_text_atomic(cache_path(cache_dir, text.clothes_id), text.to_json() + "\n")
            finish(text)

    pending: list[OutfitImages | OutfitRef] = []  # streamed: at most one chunk is held (and loaded) at a time
    for item in outfits:
        cached = _cached(cache_dir, item.clothes_id, describer)
        if cached:
            finish(cached)
            continue
        pending.append(item)
        if len(pending) >= chunk_size:
            run_chunk(pending)
            pending = []
    if pending:
        run_chunk(pending)
    texts = [done[c] for c in sorted(done)]
    if out_path is not None:
        write_text_atomic(Path(out_path), "".join(t.to_json() + "\n" for t in texts))
    return texts


def read_outfits(path: str | Path) -> dict[str, OutfitText]:
    """clothes_id -> OutfitText, from a file written by `describe_outfits`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no outfit texts at {path}; run the describe stage first")
    texts = (OutfitText.from_json(line) for line in path.read_text().splitlines() if line.strip())
    return {t.clothes_id: t for t in texts}


# -- the stage --------------------------------------------------------------------------------------------------
def run(ctx: BuildContext, records: list[Record]) -> dict[str, str]:
    """One `top | bottom | shoes` text per training outfit (split across processes); clothes_id -> text."""
    opts = ctx.opts
    out_path, cache = ctx.work / "outfits.jsonl", ctx.work / "outfits"
    describer = ctx.backends.describer.from_options(opts, ctx.spec)
    outfits = group_outfits(records, ctx.root, lambda key: load_garment_map(ctx.masks, key))
    advance = ctx.reporter.stage("describe", len(outfits))
    with ctx.state.split_between_processes(outfits) as mine:
        describe_outfits(mine, describer, None, cache_dir=cache, progress=advance)
    ctx.state.wait_for_everyone()
    if ctx.main():  # every outfit is cached now: this only merges
        describe_outfits(outfits, describer, out_path, cache_dir=cache)
    del describer
    ctx.reporter.done("describe")
    ctx.state.wait_for_everyone()
    texts = {cid: o.text for cid, o in read_outfits(out_path).items()}
    if not texts:
        raise UserError(f"{opts.dataset}: no training outfit could be described, so there are no target outfits")
    return texts


__all__ = [
    "DESCRIBERS",
    "ColorDescriber",
    "Describer",
    "OracleDescriber",
    "OutfitImages",
    "OutfitRef",
    "OutfitText",
    "VLMDescriber",
    "cache_path",
    "describe_outfits",
    "group_outfits",
    "parse_outfit_text",
    "read_outfits",
    "run",
]
