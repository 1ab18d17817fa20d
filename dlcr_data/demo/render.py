"""Rendering the demo dataset to disk in the LTCC layout, atomically and byte-for-byte reproducibly.

<root>/{train,query,test}/<pid>_<cloth>_c<cam>_<frame>.png, the parsing masks under <root>/masks/ with the same
names, <root>/outfits.json (clothes_id -> "top | bottom | shoes") and <root>/demo.json, written last.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from dlcr_data.demo.figure import Canvas, Pose, draw_person
from dlcr_data.demo.identity import Outfit
from dlcr_data.demo.labels import LABELS
from dlcr_data.demo.paint import denim_grain, expose, paint
from dlcr_data.demo.plan import CAMERAS, FORMAT_VERSION, SPLIT_FOLDERS, DemoConfig, Plan, Shot
from dlcr_data.errors import UserError
from dlcr_data.files import default_data_root

SUPERSAMPLE = 2  # draw at 2x, then box-filter the image and take the centre label of each 2x2 block
VIEWS = ("front", "back", "side")
MANIFEST = "demo.json"


def default_demo_root(config: DemoConfig | None = None) -> Path:
    """`$DLCR_DATA_ROOT/dlcr_demo-s<seed>-<ids>ids-<H>x<W>-<hash>`: one folder per config and format."""
    config = config or DemoConfig()
    key = json.dumps({"format": FORMAT_VERSION, **config.to_dict()}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    name = f"dlcr_demo-s{config.seed}-{config.num_ids}ids-{config.height}x{config.width}-{digest}"
    return default_data_root() / name


@lru_cache(maxsize=4)
def _plan(config: DemoConfig) -> Plan:
    return Plan(config)


def render_shot(config: DemoConfig, shot: Shot, outfit: Outfit | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 HxWx3, label map uint8 HxW) of one shot; depends only on the config, the shot and `outfit`.

    `outfit` (default: the one the shot's person wears) redraws the shot in another outfit: the same person, pose,
    camera, background, light and sensor noise, since the shot's random stream is spent exactly as for its own
    outfit (the `render` generator's oracle). Only the garments, and what they cover or uncover, differ.
    """
    plan = _plan(config)
    traits, worn, cam = plan.people[shot.pid].traits, plan.outfit(shot), CAMERAS[shot.cam - 1]
    outfit = outfit or worn
    rng = np.random.default_rng([config.seed, 5, shot.pid, shot.cloth, shot.cam, shot.index])
    w, h = config.width * SUPERSAMPLE, config.height * SUPERSAMPLE
    hp = cam.scale * traits.height * rng.uniform(0.96, 1.04) * h
    pose = Pose(
        view=VIEWS[rng.choice(3, p=cam.views)],
        facing=int(rng.choice((-1, 1))),
        phase=float(rng.uniform(0, 2 * math.pi)),
        cx=w / 2 + float(rng.normal(0, 0.035)) * w,
        y_feet=min(h - 2.0, (h + hp) / 2 + float(rng.uniform(-0.02, 0.03)) * h),
        hp=hp,
    )
    cv = Canvas(w, h)
    cx, y_sh = draw_person(cv, traits, outfit, pose)
    labels = np.asarray(cv.labels)
    # The worn jeans' grain comes from the shot's stream before the background: drawn whatever `outfit` is, so the
    # background and noise after it stay the shot's; jeans the shot does not wear take a stream of their own.
    grain = denim_grain(rng, h, w) if worn.bottom == "jeans" else None
    if outfit.bottom == "jeans" and grain is None:
        grain = denim_grain(np.random.default_rng([config.seed, 6, shot.pid, shot.cloth, shot.cam, shot.index]), h, w)
    grain = grain if outfit.bottom == "jeans" else None
    img = paint(labels, np.asarray(cv.shade), traits, outfit, (cx, y_sh, hp), cam, rng, SUPERSAMPLE, grain)
    s = SUPERSAMPLE
    return expose(img, cam, rng), np.ascontiguousarray(labels[s // 2 :: s, s // 2 :: s])


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=6)  # PIL adds no timestamp: reproducible


def _write_shot(config: DemoConfig, root: Path, shot: Shot) -> None:
    rgb, labels = render_shot(config, shot)
    _save_png(rgb, root / shot.folder / shot.name)
    _save_png(labels, root / "masks" / shot.folder / shot.name)


def manifest(config: DemoConfig) -> dict:
    """The content of demo.json."""
    plan = _plan(config)
    counts = plan.counts()
    return {
        "name": "dlcr_demo",
        "format": FORMAT_VERSION,
        "config": config.to_dict(),
        "labels": list(LABELS),
        "folders": SPLIT_FOLDERS,
        "cameras": [{"index": c.index, "background": c.background, "brightness": c.brightness} for c in CAMERAS],
        "counts": counts,
        "images": sum(c["images"] for c in counts.values()),
        "outfits": len(plan.outfit_texts()),
    }


def is_complete(root: Path, config: DemoConfig) -> bool:
    """True if `root` holds a finished render of `config` (demo.json matches and every file is there)."""
    try:
        meta = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if meta.get("format") != FORMAT_VERSION or meta.get("config") != config.to_dict():
        return False
    for split, folder in SPLIT_FOLDERS.items():
        want = meta["counts"][split]["images"]
        for sub in (Path(root, folder), Path(root, "masks", folder)):
            if not sub.is_dir() or sum(1 for _ in os.scandir(sub)) != want:
                return False
    return (Path(root) / "outfits.json").is_file()


def render_demo(root: Path, config: DemoConfig | None = None) -> Path:
    """Render `config` into `root` unless it already holds that render; returns `root`.

    Files are written to a hidden sibling folder that is renamed onto `root` at the end, so `root` is either
    absent/empty or complete. A non-empty `root` that is not a complete render of `config` is an error: it is
    never overwritten. One process renders the default config in about 8 s, so there is no pool.
    """
    config = config or DemoConfig()
    root = Path(root).expanduser()
    if is_complete(root, config):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(
            f"demo: {root} exists and is not a complete render of {config}; remove it, or pick an empty or new folder"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _render_into(tmp, config)
        try:
            os.replace(tmp, root)  # atomic; also replaces an empty folder
        except OSError:
            if not is_complete(root, config):  # lost a race to another renderer: fine if it finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _render_into(tmp: Path, config: DemoConfig) -> None:
    for folder in SPLIT_FOLDERS.values():
        (tmp / folder).mkdir(parents=True)
        (tmp / "masks" / folder).mkdir(parents=True)
    plan = _plan(config)
    for shot in plan.shots:
        _write_shot(config, tmp, shot)
    (tmp / "outfits.json").write_text(json.dumps(plan.outfit_texts(), indent=1) + "\n")
    (tmp / MANIFEST).write_text(json.dumps(manifest(config), indent=1) + "\n")  # last: marks it complete
