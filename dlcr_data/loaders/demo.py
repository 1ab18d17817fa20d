"""The embedded demo dataset: rendered locally on first use (no download), in LTCC's layout and names."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from dlcr_data.demo import DemoConfig, Plan, default_demo_root, render_demo
from dlcr_data.demo.plan import SPLIT_FOLDERS
from dlcr_data.demo.redraw import Redrawer
from dlcr_data.loaders import ltcc
from dlcr_data.loaders.base import FlatDataset, SplitStats
from dlcr_data.records import Record

if TYPE_CHECKING:
    import numpy as np


def demo_stats(config: DemoConfig | None = None) -> dict[str, SplitStats]:
    """Per-split counts of a config, from its plan (milliseconds, nothing is drawn)."""
    counts = Plan(config or DemoConfig()).counts()
    return {split: SplitStats(**c) for split, c in counts.items()}


class Demo(FlatDataset):
    name = "demo"
    dirname = "dlcr_demo"
    splits = ("train", "query", "gallery")
    required = ("train", "query", "test", "masks", "outfits.json")
    split_folders = SPLIT_FOLDERS
    name_pattern = ltcc.NAME_PATTERN
    parse_name = staticmethod(ltcc.parse_name)
    release_layout = ltcc.LTCC.release_layout  # not in DLCR's release: strips in LTCC's tree import offline
    layout = """
dlcr_demo/   (default: $DLCR_DATA_ROOT/dlcr_demo-s<seed>-<ids>ids-<H>x<W>-<hash>, rendered on first use)
  train/<pid>_<clothes>_c<cam>_<frame>.png
  query/<pid>_<clothes>_c<cam>_<frame>.png
  test/<pid>_<clothes>_c<cam>_<frame>.png   (gallery)
  masks/{train,query,test}/<same name>.png   (parsing labels 0-7, see demo.json)
  outfits.json   (clothes_id -> "top | bottom | shoes")
  demo.json   (config, label names, counts)
"""
    stats: ClassVar[dict[str, SplitStats]] = demo_stats()
    licence_gated = False  # rendered by this package: Apache-2.0 like the code
    ships_masks = True
    ships_outfit_texts = True
    renders_outfits = True  # the renderer draws any shot in any outfit: the `render` generator's oracle
    default_backends: ClassVar[dict[str, str]] = {"parser": "oracle", "describer": "oracle", "generator": "recolor"}
    obtain = (
        "The demo is not downloaded: it is rendered locally in seconds on first use (into an empty or new "
        "folder, or the default folder when no root is given)."
    )

    def __init__(self, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        if self.config != DemoConfig():
            self.stats = demo_stats(self.config)

    def resolve_root(self, root: str | os.PathLike | None = None) -> Path:
        """Render on first use: into the default folder, or into a given root that is missing or empty."""
        if root is None:
            root = render_demo(default_demo_root(self.config), self.config)
        else:
            path = Path(root).expanduser()
            if not path.exists() or (path.is_dir() and not any(path.iterdir())):
                render_demo(path, self.config)
        return super().resolve_root(root)

    def mask_path(self, root: Path, record: Record) -> Path:
        """The parsing mask of a record; `root` is the resolved root (`Loaded.root`)."""
        return Path(root) / "masks" / record.path

    def outfit_texts(self, root: Path) -> dict[str, str]:
        """clothes_id (e.g. "3_1") -> "top | bottom | shoes"."""
        return json.loads((Path(root) / "outfits.json").read_text())

    def outfit_renderer(self, root: Path) -> Callable[[str, str], np.ndarray]:
        """(image path, clothes id, e.g. "3_1") -> the image's person, pose, camera and background in that outfit."""
        return Redrawer(root).redraw
