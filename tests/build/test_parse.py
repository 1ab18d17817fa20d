"""The parse stage: SegFormer through the real save/load path, the demo oracle, clothing masks, resumable caching
(label maps: test_label_map.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from label_sets import SEGFORMER_B2_CLOTHES
from parse_cases import DEMO_TO_CLASS, parser_for, random_images
from PIL import Image
from tiny_models import force_label

from dlcr_data.build.parse import (
    PARSERS,
    OracleParser,
    SegformerParser,
    clothing_mask,
    load_garment_map,
    parse_records,
)
from dlcr_data.errors import UserError
from dlcr_data.pretrained import ModelNotFound
from dlcr_data.records import Record
from dlcr_data.vocab.garments import CLASS_ID, CLASSES

# -- SegFormer -------------------------------------------------------------------------------------------------


def test_segformer_maps_have_each_images_size_and_canonical_ids(tiny_segformer):
    parser = SegformerParser(str(tiny_segformer), batch_size=2)  # 3 images: a batch of 2, then 1
    assert (parser.name, parser.model_id, parser.unmapped) == ("segformer", str(tiny_segformer), ())
    assert parser.label_map == SEGFORMER_B2_CLOTHES
    images = random_images([(20, 40), (64, 128), (17, 33)])  # mixed sizes and aspect ratios
    maps = parser.parse(images, [], Path())
    for image, garment_map in zip(images, maps, strict=True):
        assert garment_map.shape == (image.height, image.width)
        assert garment_map.dtype == np.uint8
        assert set(np.unique(garment_map)) <= set(range(len(CLASSES)))
    # Deterministic, and independent of how images are batched.
    again = parser.parse(images, [], Path())
    solo = [SegformerParser(str(tiny_segformer), batch_size=1).parse([im], [], Path())[0] for im in images]
    for a, b, c in zip(maps, again, solo, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    ("label", "cls"),
    [("Pants", "lower"), ("Left-arm", "skin"), ("Hat", "hat"), ("Bag", "accessories"), ("Upper-clothes", "upper")],
)
def test_segformer_label_wins_gives_its_canonical_class(tiny_segformer, label, cls):
    parser = SegformerParser(str(tiny_segformer))
    force_label(parser.model, label)  # constant logits, in memory only: this label wins everywhere
    maps = parser.parse(random_images([(24, 48), (40, 40)]), [], Path())
    assert all((m == CLASS_ID[cls]).all() for m in maps)


def test_bad_model_id_is_one_line_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound) as info:
        SegformerParser("no-such-org/no-such-parser")
    message = str(info.value)
    assert "\n" not in message and "no-such-org/no-such-parser" in message and "--parser-model" in message
    with pytest.raises(ModelNotFound, match="--parser-model"):
        parser_for("segformer", "ltcc", parser_model=str(tmp_path))  # an empty local folder


# -- oracle and registry ---------------------------------------------------------------------------------------


def test_oracle_maps_demo_labels_to_canonical_classes(demo):
    root, records = demo
    parser = parser_for("oracle", "demo")
    assert (parser.name, parser.model_id) == ("oracle", None)
    images = [Image.open(root / r.path).convert("RGB") for r in records]
    maps = parser.parse(images, records, root)
    seen = set()
    for record, garment_map in zip(records, maps, strict=True):
        labels = np.asarray(Image.open(root / "masks" / record.path))
        expected = np.vectorize(lambda v: CLASS_ID[DEMO_TO_CLASS[v]], otypes=[np.uint8])(labels)
        np.testing.assert_array_equal(garment_map, expected)
        seen |= set(np.unique(garment_map).tolist())
    assert {CLASS_ID[c] for c in ("upper", "lower", "shoes", "skin", "hair", "face")} <= seen


def test_oracle_needs_a_dataset_with_masks():
    with pytest.raises(UserError, match="ltcc ships no parsing masks; use --parser segformer"):
        OracleParser("ltcc")
    with pytest.raises(UserError, match="ships no parsing masks"):
        parser_for("oracle", "prcc", batch_size=4)  # inference options are accepted
    with pytest.raises(UserError, match="--parser-model"):
        parser_for("oracle", "demo", parser_model="some/model")


def test_unknown_parser_lists_choices():
    with pytest.raises(UserError) as info:
        parser_for("schp", "demo")
    assert all(name in str(info.value) for name in PARSERS)


# -- clothing mask ---------------------------------------------------------------------------------------------


def test_clothing_mask_default_classes_are_garments_only():
    garment_map = np.arange(len(CLASSES), dtype=np.uint8)[None, :]  # one pixel per class
    mask = clothing_mask(garment_map)[0]
    assert {CLASSES[i] for i in np.flatnonzero(mask)} == {"upper", "lower", "dress", "shoes", "accessories"}
    assert {CLASSES[i] for i in np.flatnonzero(clothing_mask(garment_map, ("hair", "hat"))[0])} == {"hair", "hat"}
    with pytest.raises(UserError, match="unknown garment class"):
        clothing_mask(garment_map, ("shirt",))


@pytest.mark.parametrize("dilation", [0, 1, 3])
def test_clothing_mask_dilation_grows_a_pixel_into_a_square(dilation):
    garment_map = np.zeros((15, 11), np.uint8)
    garment_map[7, 5] = CLASS_ID["upper"]
    garment_map[0, 0] = CLASS_ID["shoes"]  # at the border: clipped, no wrap-around
    mask = clothing_mask(garment_map, dilation=dilation)
    expected = np.zeros_like(mask)
    expected[7 - dilation : 8 + dilation, 5 - dilation : 6 + dilation] = True
    expected[: 1 + dilation, : 1 + dilation] = True
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == bool


# -- parse_records ---------------------------------------------------------------------------------------------


class Counting:
    """Wraps a parser, counting the images it is asked to parse; can fail on a given call."""

    def __init__(self, parser, fail_on_call: int | None = None) -> None:
        self.inner, self.name, self.model_id = parser, parser.name, parser.model_id
        self.calls, self.images, self.fail_on_call = 0, 0, fail_on_call

    def parse(self, images, records, root):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # a kill in the middle of a build
        self.images += len(images)
        return self.inner.parse(images, records, root)


@pytest.fixture
def demo_copy(demo, tmp_path) -> tuple[Path, list[Record]]:
    root, records = demo
    shutil.copytree(root, tmp_path / "root")
    return tmp_path / "root", records


def test_parse_records_writes_maps_skips_corrupt_and_resumes(demo_copy, tmp_path):
    root, records = demo_copy
    corrupt, no_mask = records[1], records[-1]
    (root / corrupt.path).write_bytes(np.random.default_rng(0).bytes(300))
    (root / "masks" / no_mask.path).unlink()
    out, done = tmp_path / "maps", []
    parser = Counting(OracleParser("demo"))

    skipped = parse_records(records, root, parser, out, batch_size=4, progress=done.append)
    assert {s.path for s in skipped} == {corrupt.path, no_mask.path}
    assert "unreadable image" in next(s.reason for s in skipped if s.path == corrupt.path)
    assert "no shipped mask" in next(s.reason for s in skipped if s.path == no_mask.path)
    assert all(str(root) not in s.reason for s in skipped)  # reasons are published: no local absolute path
    assert sum(done) == len(records)
    good = [r for r in records if r not in (corrupt, no_mask)]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{r.key}.png" for r in good)  # no .tmp left
    oracle = OracleParser("demo")
    for r in good[:3]:
        expected = oracle.parse([Image.open(root / r.path).convert("RGB")], [r], root)[0]
        np.testing.assert_array_equal(load_garment_map(out, r.key), expected)

    parser.images, done = 0, []
    assert {s.path for s in parse_records(records, root, parser, out, progress=done.append)} == {
        corrupt.path,
        no_mask.path,
    }
    assert parser.images == 1  # only the item without a mask is tried again
    assert sum(done) == len(records)


def test_parse_records_resumes_after_a_kill(demo_copy, tmp_path):
    root, records = demo_copy
    out = tmp_path / "maps"
    with pytest.raises(KeyboardInterrupt):
        parse_records(records, root, Counting(OracleParser("demo"), fail_on_call=2), out, batch_size=3)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{r.key}.png" for r in records[:3])
    parser = Counting(OracleParser("demo"))
    assert parse_records(records, root, parser, out, batch_size=3) == []
    assert parser.images == len(records) - 3
    assert len(list(out.iterdir())) == len(records)


def test_parse_records_with_segformer_uses_a_videos_first_frame(tiny_segformer, tmp_path):
    root = tmp_path / "root"
    (root / "t1").mkdir(parents=True)
    for name, (w, h) in {"f0.png": (20, 44), "f1.png": (30, 30), "img.jpg": (16, 32)}.items():
        folder = root / "t1" if name.startswith("f") else root
        random_images([(w, h)])[0].save(folder / name)
    records = [
        Record("t1", "t1", 1, 0, "1_1", "train", frames=("t1/f0.png", "t1/f1.png")),
        Record("img", "img.jpg", 2, 1, "2_1", "train"),
    ]
    parser = SegformerParser(str(tiny_segformer), device="cpu")
    assert parse_records(records, root, parser, tmp_path / "maps") == []
    assert load_garment_map(tmp_path / "maps", "t1").shape == (44, 20)
    assert load_garment_map(tmp_path / "maps", "img").shape == (32, 16)
