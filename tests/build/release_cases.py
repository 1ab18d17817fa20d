"""Fixture releases for the import-release tests: DLCR's documented layout written by the test.

The original dataset's tree, one PNG strip of 10 variants per training image (`X.png` or `X.jpg.png`) and a `.txt`
of 10 `top| bottom| shoes` lines, next to the raw dataset trees of `fixtures.py` (8 x 16 images, so a variant is
8 x 16 and a strip of 10 is 80 x 16). Expected numbers are counted from what the test wrote, never from the code.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from fixtures import IMAGE_SIZE
from PIL import Image
from typer.testing import CliRunner

from dlcr_data.cli import app
from dlcr_data.files import sha256_file

W, H = IMAGE_SIZE  # one variant, as the originals
N = 10  # variants per strip, as DLCR's release
TEXTS = [f"Colour{k} shirt| Blue jeans| Black shoes" for k in range(N)]
NORMALISED = [f"Colour{k} shirt | Blue jeans | Black shoes" for k in range(N)]
BIN = Path(sys.executable).parent
runner = CliRunner()

PRCC_STRIPS = {  # strip in the release -> the original's path under the raw PRCC root
    "prcc/rgb/train/001/A_cropped_rgb001.png": "rgb/train/001/A_cropped_rgb001.jpg",  # named after the stem
    "prcc/rgb/train/001/B_cropped_rgb001.jpg.png": "rgb/train/001/B_cropped_rgb001.jpg",  # after the full name
    "prcc/rgb/train/002/C_cropped_rgb001.png": "rgb/train/002/C_cropped_rgb001.jpg",
}
LTCC_STRIPS = {
    "LTCC_ReID/train/1_1_c1_000001.png": "train/1_1_c1_000001.png",  # the stem form: the original's own name
    "LTCC_ReID/train/1_2_c3_000004.png.png": "train/1_2_c3_000004.png",  # the full name plus .png
    "LTCC_ReID/train/2_1_c1_000005.png": "train/2_1_c1_000005.png",
}


def colour(strip: int, k: int) -> tuple[int, int, int]:
    """The solid colour of variant k of the strip-th strip: every variant of the release differs."""
    return (40 + 20 * strip, 10 + 24 * k, 255 - 20 * strip)


def write_strip(
    release: Path,
    rel: str,
    index: int,
    *,
    width: int | None = None,
    lines: list[str] | None = None,
    txt: bool = True,
    noise: bool = False,
) -> Path:
    """`release/rel`: N solid variants side by side (or noise), and its .txt (`X.jpg.png` -> `X.jpg.txt`)."""
    path = release / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    strip = Image.new("RGB", (width or N * W, H))
    for k in range(N):
        strip.paste(Image.new("RGB", (W, H), colour(index, k)), (k * W, 0))
    if noise:
        strip = Image.fromarray(np.random.default_rng(index).integers(0, 255, (H, width or N * W, 3), np.uint8))
    strip.save(path)
    if txt:
        path.with_suffix(".txt").write_text("\n".join(TEXTS if lines is None else lines) + "\n")
    return path


def write_release(folder: Path, strips: dict[str, str]) -> Path:
    for i, rel in enumerate(strips):
        write_strip(folder, rel, i)
    return folder


def shards(out: Path, dataset: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / dataset).glob("*.tar"))}


def samples(out: Path, dataset: str) -> list[tuple[str, dict, np.ndarray, set[str]]]:
    """(key, json, pixels, member extensions) of every sample, in shard order."""
    rows: dict[str, dict] = {}
    for path in sorted((out / dataset).glob("*.tar")):
        with tarfile.open(path) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                rows.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return [
        (key, json.loads(r["json"]), np.asarray(Image.open(io.BytesIO(r["png"]))), set(r)) for key, r in rows.items()
    ]


def tree(out: Path) -> dict[str, str]:
    """sha256 of every product file (work/ caches excluded)."""
    return {
        p.relative_to(out).as_posix(): sha256_file(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and "work" not in p.relative_to(out).parts
    }


def invoke(*args: object):
    return runner.invoke(app, ["import-release", *(str(a) for a in args)])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
