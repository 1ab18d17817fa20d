"""The `render` generator (generate/render.py): the demo's oracle, checked on real builds of the tiny demo.

Expected images are computed here independently: the demo renderer called directly on (source shot, target outfit)
and composited by hand through a mask read from the demo's own label files.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from demo_cases import TINY_DEMO as TINY  # `tiny_demo`'s config
from fixtures import WRITERS
from PIL import Image
from typer.testing import CliRunner

from dlcr_data.build import BuildOptions, build
from dlcr_data.build.generate import GENERATORS
from dlcr_data.cli import app
from dlcr_data.demo.labels import ARMS, LEGS, LOWER, SHOES, UPPER
from dlcr_data.demo.plan import Plan
from dlcr_data.demo.render import render_shot
from dlcr_data.errors import UserError

CLOTHING = ("upper", "lower", "dress", "shoes", "accessories")  # the default --mask-classes
REFUSAL = (
    "error: --generator render cannot build ltcc: it is the oracle of datasets that redraw their own synthetic "
    "people (demo); for ltcc use --generator recolor, clone, swap or diffusion"
)


def render_build(root: Path, out: Path, *, skin: bool = False) -> dict:
    classes = (*CLOTHING, "skin") if skin else CLOTHING
    return build(
        BuildOptions(
            "demo", out, root=str(root), generator="render", variants=5, limit=3, splits=("train", "query"),
            mask_classes=classes, shard_samples=10, batch_size=4,
        )
    )  # fmt: skip


def samples(out: Path) -> dict[str, dict[str, bytes]]:
    """Sample key -> {extension: bytes}, over every shard."""
    found: dict[str, dict[str, bytes]] = defaultdict(dict)
    for shard in sorted((out / "demo").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                found[key][ext] = tar.extractfile(member).read()
    return dict(found)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "demo").glob("*.tar"))}


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class Oracle:
    """The tiny demo read without the package's build code: shots by sample key, outfits by clothes id."""

    def __init__(self, root: Path) -> None:
        self.root, self.plan = root, Plan(TINY)
        self.shots = {f"{'gallery' if s.folder == 'test' else s.folder}_{s.name[:-4]}": s for s in self.plan.shots}

    def source(self, meta: dict) -> tuple[np.ndarray, np.ndarray]:
        """(RGB, demo label map) of a sample's source image, from the files."""
        shot = self.shots[meta["source_key"]]
        image = rgb((self.root / shot.folder / shot.name).read_bytes())
        return image, np.asarray(Image.open(self.root / "masks" / shot.folder / shot.name))

    def target(self, meta: dict) -> tuple[np.ndarray, np.ndarray]:
        """(RGB, labels) of the source shot drawn by the demo renderer in the sample's target outfit."""
        pid, cloth = map(int, meta["target_clothes_id"].split("_"))
        return render_shot(TINY, self.shots[meta["source_key"]], self.plan.people[pid].outfits[cloth - 1])


@pytest.fixture(scope="module")
def builds(tiny_demo, tmp_path_factory) -> dict[str, Path]:
    """The same render build with the default clothing mask and with skin added."""
    base = tmp_path_factory.mktemp("render")
    outs = {"default": base / "default", "skin": base / "skin"}
    for name, out in outs.items():
        render_build(tiny_demo, out, skin=name == "skin")
    return outs


def metas(out: Path) -> dict[str, tuple[dict, dict[str, bytes]]]:
    """Sample key -> (its json, its members)."""
    return {key: (json.loads(s["json"]), s) for key, s in samples(out).items()}


def test_registered_as_a_model_free_generator():
    cls = GENERATORS["render"]
    assert cls.name == "render" and cls.default_model is None and cls.model_option is None
    assert cls.needs_donor is False and cls.model_id is None


@pytest.mark.parametrize("mask", ["default", "skin"])
def test_variant_is_the_demo_rendering_inside_the_mask_and_the_source_outside(builds, tiny_demo, mask):
    oracle = Oracle(tiny_demo)
    found = metas(builds[mask])
    assert len(found) == 5 * 3 * 2 and {m["split"] for m, _ in found.values()} == {"train", "query"}
    labels = (UPPER, LOWER, SHOES) + ((ARMS, LEGS) if mask == "skin" else ())  # the demo labels of those classes
    for key, (meta, sample) in found.items():
        assert meta["generator"] == "render" and meta["model"] == ""
        source, source_labels = oracle.source(meta)
        inside = np.isin(source_labels, labels)
        expected = np.where(inside[..., None], oracle.target(meta)[0], source)
        assert np.array_equal(rgb(sample["png"]), expected), key
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(sample["mask.png"]))) > 0, inside), key


def test_skin_in_the_mask_lets_the_target_shape_in(builds, tiny_demo):
    """A skirt source whose target is full-length (jeans): its bare legs stay with the clothing-only mask (the
    composite keeps the skirt's shape) and become the target's trousers with skin in the mask."""
    oracle, default, skin = Oracle(tiny_demo), metas(builds["default"]), metas(builds["skin"])
    plan, pairs = oracle.plan, 0
    for key, (meta, sample) in sorted(default.items()):
        source_outfit = plan.outfit(oracle.shots[meta["source_key"]])
        pid, cloth = map(int, meta["target_clothes_id"].split("_"))
        if source_outfit.bottom != "skirt" or plan.people[pid].outfits[cloth - 1].bottom not in ("trousers", "jeans"):
            continue
        source, source_labels = oracle.source(meta)
        legs = source_labels == LEGS
        assert legs.sum() > 20
        np.testing.assert_array_equal(rgb(sample["png"])[legs], source[legs])  # default mask: legs untouched
        with_skin = rgb(skin[key][1]["png"])
        target_labels = oracle.target(meta)[1]
        covered = legs & (target_labels == LOWER)  # where the target's trousers are drawn over the bare legs
        assert covered.sum() > 0.5 * legs.sum()
        assert np.abs(with_skin[covered].astype(int) - source[covered]).mean() > 10
        pairs += 1
    assert pairs >= 2


def test_deterministic_and_resumable(builds, tiny_demo, tmp_path):
    again = tmp_path / "again"
    render_build(tiny_demo, again)
    first = shard_bytes(builds["default"])
    assert len(first) > 1 and shard_bytes(again) == first
    victim = sorted((again / "demo").glob("*.tar"))[1]
    victim.write_bytes(victim.read_bytes()[:1000])  # a damaged shard: the rerun regenerates it
    render_build(tiny_demo, again)
    assert shard_bytes(again) == first


def test_refused_on_a_real_dataset_before_any_work(tmp_path):
    fx = WRITERS["ltcc"](tmp_path / "data")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["build", "ltcc", "--root", str(fx.root), "--out", str(out), "--generator", "render"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == REFUSAL
    assert "Traceback" not in result.output and not out.exists()
    # Before the dataset is even loaded: a missing root is not what is reported.
    with pytest.raises(UserError, match="render cannot build ltcc"):
        build(BuildOptions("ltcc", out, root=str(tmp_path / "absent"), generator="render"))
    assert not out.exists()


def test_limit_cuts_the_sources(tiny_demo, tmp_path):
    out = tmp_path / "out"
    build(BuildOptions("demo", out, root=str(tiny_demo), generator="render", variants=2, limit=1))
    keys = sorted(samples(out))
    assert len(keys) == 2 and len({k.rsplit("_v", 1)[0] for k in keys}) == 1
