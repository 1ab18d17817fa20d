"""A contact sheet of a rendered demo: per identity, each outfit from two cameras with its parsing mask."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dlcr_data.demo.labels import colourise
from dlcr_data.demo.plan import SPLIT_FOLDERS, parse_shot_name

SHOTS_PER_OUTFIT = 2
MAX_OUTFITS = 3
CAPTION_LINES = 3  # top, bottom, shoes
LINE_HEIGHT = 12
PAD = 4


def _index(root: Path) -> dict[int, dict[str, list[Path]]]:
    """pid -> clothes_id -> image paths, sorted by name."""
    out: dict[int, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for folder in SPLIT_FOLDERS.values():
        for path in sorted((root / folder).glob("*.png")):
            parsed = parse_shot_name(path.name)
            if parsed:
                out[parsed[0]][parsed[1]].append(path)
    return out


def _pick(paths: list[Path]) -> list[Path]:
    """Up to SHOTS_PER_OUTFIT images, from different cameras where possible."""
    by_cam: dict[str, Path] = {}
    for p in sorted(paths, key=lambda p: p.name):
        by_cam.setdefault(p.name.split("_")[2], p)
    picked = list(by_cam.values())[:SHOTS_PER_OUTFIT]
    return picked + [p for p in paths if p not in picked][: SHOTS_PER_OUTFIT - len(picked)]


def sample_sheet(root: Path, n: int = 8) -> Image.Image:
    """`n` identities (spread over the pid range), one row each: image + mask per shot, outfit text below."""
    root = Path(root)
    index = _index(root)
    texts = json.loads((root / "outfits.json").read_text())
    pids = sorted(index)
    if not pids:
        raise FileNotFoundError(f"no demo images under {root}")
    n = min(n, len(pids))
    chosen = [pids[round(i * (len(pids) - 1) / max(n - 1, 1))] for i in range(n)]
    with Image.open(next(iter(next(iter(index.values())).values()))[0]) as im:
        w, h = im.size
    group_w = SHOTS_PER_OUTFIT * 2 * w + PAD
    row_h = h + CAPTION_LINES * LINE_HEIGHT + 2 * PAD + LINE_HEIGHT
    sheet = Image.new("RGB", (MAX_OUTFITS * group_w + PAD, n * row_h), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for row, pid in enumerate(chosen):
        y = row * row_h
        draw.text((PAD, y + 1), f"pid {pid}", fill="black", font=font)
        for g, clothes_id in enumerate(sorted(index[pid])[:MAX_OUTFITS]):
            x = PAD + g * group_w
            for k, path in enumerate(_pick(index[pid][clothes_id])):
                mask = root / "masks" / path.relative_to(root)
                with Image.open(path) as im, Image.open(mask) as m:
                    sheet.paste(im.convert("RGB"), (x + 2 * k * w, y + LINE_HEIGHT))
                    sheet.paste(colourise(m), (x + (2 * k + 1) * w, y + LINE_HEIGHT))
            caption = [part.strip() for part in texts.get(clothes_id, "? | ? | ?").split("|")]
            caption[0] = f"{clothes_id}: {caption[0]}"
            for i, line in enumerate(caption[:CAPTION_LINES]):
                draw.text((x, y + LINE_HEIGHT + h + PAD + i * LINE_HEIGHT), line, fill="black", font=font)
    return sheet
