"""`dlcr-data preview`: a contact sheet of a build — per row a source image, its mask and its variants."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dlcr_data import loaders
from dlcr_data.errors import UserError
from dlcr_data.manifest import read_manifest, source_root

TILE_H = 128  # every tile is scaled to this height
LINE_H = 11
CAPTION_LINES = 3
PAD = 4


def contact_sheet(out: Path, n: int = 8, dataset: str | None = None, split: str = "train") -> Image.Image:
    """Rows of [source | mask | variant 0 | variant 1 | ...]; variants captioned with their target text."""
    entry, dataset = _build_entry(Path(out), dataset)
    urls = [str(Path(out) / s["path"]) for s in entry["shards"] if s["split"] == split]
    if not urls:
        raise UserError(f"{out}: the {dataset} build has no {split} shards; choose --split from its splits")
    rows = _first_sources(urls, n)
    sources = _source_images(dataset, source_root(Path(out), dataset, entry), {k for k, _ in rows})
    return _draw(rows, sources)


def preview_split(manifest: dict) -> tuple[str, str] | None:
    """The (dataset, split) a card's preview shows: the first dataset (by name) that has a shard, and its first
    shard's split; None when no dataset has one (a valid manifest may hold an entry without shards)."""
    for name in sorted(manifest["builds"]):
        shards = manifest["builds"][name].get("shards") or []
        if shards:
            return name, shards[0]["split"]
    return None


def _build_entry(out: Path, dataset: str | None) -> tuple[dict, str]:
    manifest = read_manifest(out)
    builds = manifest["builds"]
    if dataset is None:
        shown = preview_split(manifest)
        if shown is None:
            raise UserError(f"{out}: no build in manifest.json has a shard, so there is nothing to preview")
        dataset = shown[0]
    if dataset not in builds:
        raise UserError(f"{out} has no {dataset} build; it has: {', '.join(sorted(builds)) or 'none'}")
    return builds[dataset], dataset


def _first_sources(urls: list[str], n: int) -> list[tuple[str, list[dict]]]:
    """The first `n` source keys of the shards with their samples (image, mask, json), in shard order."""
    import webdataset as wds

    rows: dict[str, list[dict]] = {}
    # Every shard on this process, even inside a distributed run (the main process draws the card's preview).
    every_shard = wds.WebDataset(urls, shardshuffle=False, empty_check=False, nodesplitter=lambda src: src)
    for sample in every_shard.decode("pil"):
        meta = sample["json"]
        key = meta["source_key"]
        if key not in rows and len(rows) == n:
            break
        image = sample.get("png") or sample.get("jpg")
        # an imported release has no masks: its mask tile stays blank
        rows.setdefault(key, []).append({"image": image, "mask": sample.get("mask.png"), "meta": meta})
    return list(rows.items())


def _source_images(dataset: str, root: str | None, keys: set[str]) -> dict[str, Image.Image]:
    """Source images by key, when the source root is still reachable (else the tile stays blank)."""
    if not root or not Path(root).is_dir():
        return {}
    try:
        loaded = loaders.load(dataset, root)
    except UserError:
        return {}
    found = {}
    for records in loaded.splits.values():
        for r in records:
            if r.key in keys:
                with Image.open(loaded.root / r.image_path) as im:
                    found[r.key] = im.convert("RGB")
    return found


def _fit(image: Image.Image | None, width: int) -> Image.Image:
    if image is None:
        return Image.new("RGB", (width, TILE_H), "lightgrey")
    return image.convert("RGB").resize((width, TILE_H), Image.Resampling.BILINEAR)


def _draw(rows: list[tuple[str, list[dict]]], sources: dict[str, Image.Image]) -> Image.Image:
    if not rows:  # every source was skipped: say so rather than fail the build's last step
        empty = Image.new("RGB", (320, 2 * LINE_H), "white")
        ImageDraw.Draw(empty).text((PAD, PAD), "no generated samples in these shards", fill="black")
        return empty
    first = rows[0][1][0]["image"]
    tile_w = max(8, round(first.width * TILE_H / first.height))
    cols = 2 + max(len(samples) for _, samples in rows)
    row_h = LINE_H + TILE_H + CAPTION_LINES * LINE_H + PAD
    sheet = Image.new("RGB", (cols * (tile_w + PAD), len(rows) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, (key, samples) in enumerate(rows):
        y = r * row_h
        draw.text((0, y), f"{key}  (source, mask, variants)", fill="black", font=font)
        tiles = [sources.get(key), samples[0]["mask"]] + [s["image"] for s in samples]
        for c, tile in enumerate(tiles):
            sheet.paste(_fit(tile, tile_w), (c * (tile_w + PAD), y + LINE_H))
        for c, s in enumerate(samples, start=2):
            for i, part in enumerate(s["meta"]["target_text"].split("|")[:CAPTION_LINES]):
                text = _clip(draw, part.strip(), font, tile_w + PAD)
                draw.text((c * (tile_w + PAD), y + LINE_H + TILE_H + i * LINE_H), text, fill="black", font=font)
    return sheet


def _clip(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text
