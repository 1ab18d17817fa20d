"""Redrawing a demo shot in another outfit (`render_shot(..., outfit)`, `demo/redraw.py`): the `render` oracle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from demo_cases import TINY_DEMO  # `tiny_demo`'s config

from dlcr_data.demo.labels import FACE, HAIR
from dlcr_data.demo.plan import DemoConfig
from dlcr_data.demo.redraw import Redrawer
from dlcr_data.demo.render import _plan, render_shot
from dlcr_data.errors import UserError
from dlcr_data.loaders import DATASETS, get

SMALL_DEMO = DemoConfig(num_ids=6, images_per_camera=2)  # the default design, small: some of its people wear jeans


def quiet_background(labels: np.ndarray, r: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood is background in the label map: no person pixel blends into them."""
    person = np.pad(labels > 0, r)
    h, w = labels.shape
    near = np.zeros((h, w), bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            near |= person[dy : dy + h, dx : dx + w]
    return ~near


def test_own_outfit_is_the_shot_byte_for_byte():
    plan = _plan(TINY_DEMO)
    for shot in plan.shots[::7]:
        rgb, labels = render_shot(TINY_DEMO, shot)
        again, again_labels = render_shot(TINY_DEMO, shot, plan.outfit(shot))
        assert rgb.tobytes() == again.tobytes() and labels.tobytes() == again_labels.tobytes()


def test_another_outfit_keeps_person_pose_camera_and_background():
    plan = _plan(SMALL_DEMO)
    outfits = [o for p in plan.people.values() for o in p.outfits]
    jeans = [o for o in outfits if o.bottom == "jeans"]
    paths = set()  # the grain's two random streams: the shot's own jeans, and jeans the shot does not wear
    checked = 0
    for shot in plan.shots[::5]:
        rgb, labels = render_shot(SMALL_DEMO, shot)
        worn = plan.outfit(shot)
        for outfit in (o for o in [*jeans[:1], *outfits[::3]] if o != worn):
            new, new_labels = render_shot(SMALL_DEMO, shot, outfit)
            assert new.shape == rgb.shape and new_labels.shape == labels.shape
            quiet = quiet_background(labels) & quiet_background(new_labels)
            assert quiet.mean() > 0.4
            np.testing.assert_array_equal(new[quiet], rgb[quiet])  # same background, light and sensor noise
            head = np.isin(labels, (HAIR, FACE))
            np.testing.assert_array_equal(np.isin(new_labels, (HAIR, FACE)), head)  # same person and pose
            paths.add((worn.bottom == "jeans", outfit.bottom == "jeans"))
            checked += 1
    assert checked > 20 and {(True, False), (False, True), (False, False)} <= paths


def test_redrawer_finds_shots_and_outfits_by_key(tiny_demo):
    redrawer = Redrawer(tiny_demo)
    plan = _plan(TINY_DEMO)
    shot = plan.shots[3]
    target = next(f"{p.pid}_{i}" for p in plan.people.values() for i in (1, 2) if p.pid != shot.pid)
    pid, cloth = map(int, target.split("_"))
    expected = render_shot(TINY_DEMO, shot, plan.people[pid].outfits[cloth - 1])[0]
    np.testing.assert_array_equal(redrawer.redraw(f"{shot.folder}/{shot.name}", target), expected)
    with pytest.raises(ValueError, match="clothes id '99_1'"):
        redrawer.redraw(f"{shot.folder}/{shot.name}", "99_1")
    with pytest.raises(ValueError, match="clothes id '1_9'"):
        redrawer.redraw(f"{shot.folder}/{shot.name}", "1_9")
    with pytest.raises(ValueError, match=r"train/nope\.png: not an image"):
        redrawer.redraw("train/nope.png", target)


def test_redrawer_needs_a_complete_render(tiny_demo, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo, root)
    meta = json.loads((root / "demo.json").read_text())
    (root / "demo.json").write_text(json.dumps({**meta, "format": -1}))
    with pytest.raises(UserError, match="not a complete render"):
        Redrawer(root)
    (root / "demo.json").unlink()
    with pytest.raises(UserError, match="cannot read the render's config"):
        Redrawer(root)


def test_only_the_demo_renders_outfits(tiny_demo):
    assert {name for name, d in DATASETS.items() if d.renders_outfits} == {"demo"}
    with pytest.raises(NotImplementedError, match="ltcc cannot redraw"):
        get("ltcc").outfit_renderer(tiny_demo)
