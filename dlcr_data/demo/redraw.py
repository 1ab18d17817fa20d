"""Redrawing an image of a rendered demo in another of its outfits: what the `render` generator draws.

The demo knows everything an image shows (config, person, pose, camera, outfit), so an image path and a clothes id
are enough: the shot is found by its path and the outfit by its clothes id (`<pid>_<cloth>`, as `Shot.clothes_id`
writes it), exactly, never guessed from an outfit text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dlcr_data.demo.identity import Outfit
from dlcr_data.demo.plan import DemoConfig, Shot
from dlcr_data.demo.render import MANIFEST, _plan, is_complete, render_shot
from dlcr_data.errors import UserError


def read_config(root: Path) -> DemoConfig:
    """The config a complete demo render under `root` was made with (from its demo.json); a one-line UserError
    when `root` holds no complete render of the current format."""
    try:
        config = DemoConfig(**json.loads((Path(root) / MANIFEST).read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"demo: cannot read the render's config from {Path(root) / MANIFEST} ({type(err).__name__}: {err}); "
            "render the demo again into an empty folder (dlcr-data demo --root DIR)"
        ) from None
    if not is_complete(root, config):
        raise UserError(
            f"demo: {root} is not a complete render of this version's demo format; render it again into an empty "
            "folder (dlcr-data demo --root DIR)"
        )
    return config


class Redrawer:
    """The shots and outfits of the demo rendered under `root`; `redraw` draws one shot in one outfit."""

    def __init__(self, root: Path) -> None:
        self.config = read_config(root)
        self.plan = _plan(self.config)
        self.shots: dict[str, Shot] = {f"{s.folder}/{s.name}": s for s in self.plan.shots}

    def shot(self, path: str) -> Shot:
        """The shot of the image at `path` (POSIX, relative to the root, as `Record.path`)."""
        shot = self.shots.get(path)
        if shot is None:
            raise ValueError(f"{path}: not an image of the demo rendered from {self.config}")
        return shot

    def outfit(self, clothes_id: str) -> Outfit:
        """The outfit `<pid>_<cloth>` names (any identity's: a target outfit is usually someone else's)."""
        pid, _, cloth = clothes_id.partition("_")
        person = self.plan.people.get(int(pid)) if pid.isdigit() else None
        if person is None or not cloth.isdigit() or not 1 <= int(cloth) <= len(person.outfits):
            raise ValueError(f"clothes id {clothes_id!r}: no such outfit in the demo rendered from {self.config}")
        return person.outfits[int(cloth) - 1]

    def redraw(self, path: str, clothes_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3): the image at `path` with its person wearing outfit `clothes_id` (`render_shot`)."""
        return render_shot(self.config, self.shot(path), self.outfit(clothes_id))[0]
