"""The parse stage: label maps (rules, overrides, where they show), SegFormer through the real save/load path, the
demo oracle, clothing masks, resumable caching."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import CLOTHES_LABELS, force_label, save_tiny_segformer

from dlcr_data import loaders
from dlcr_data.build import BuildOptions, build
from dlcr_data.build.backends import lookup
from dlcr_data.build.parse import (
    LABEL_MAP_FILE,
    PARSERS,
    OracleParser,
    SegformerParser,
    clothing_mask,
    label_lut,
    load_garment_map,
    parse_records,
    resolve_label_map,
)
from dlcr_data.demo import DemoConfig
from dlcr_data.demo.labels import ARMS, FACE, HAIR, LEGS, LOWER, SHOES, UPPER
from dlcr_data.errors import UserError
from dlcr_data.loaders.demo import Demo
from dlcr_data.pretrained import ModelNotFound
from dlcr_data.progress import Reporter
from dlcr_data.records import Record
from dlcr_data.vocab.garments import CLASS_ID, CLASSES, DEFAULT_MASK_CLASSES, canonical_class

TINY_DEMO = DemoConfig(num_ids=4, images_per_camera=1)
DEMO_TO_CLASS = {0: "background", HAIR: "hair", FACE: "face", UPPER: "upper", LOWER: "lower", SHOES: "shoes"}
DEMO_TO_CLASS |= {ARMS: "skin", LEGS: "skin"}


def parser_for(name: str, dataset: str, **options):
    """The parser a build with these options uses (registry lookup, then `from_options`)."""
    opts = BuildOptions(dataset, Path("out"), parser=name, **options)
    return lookup(PARSERS, name, "parser").from_options(opts, loaders.get(dataset))


@pytest.fixture(scope="module")
def demo(demo_root_for) -> tuple[Path, list[Record]]:
    loaded = Demo(TINY_DEMO).load(demo_root_for(TINY_DEMO))
    return loaded.root, [r for recs in loaded.splits.values() for r in recs]


def random_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


# -- SegFormer -------------------------------------------------------------------------------------------------


# -- label maps: model label -> garment class ----------------------------------------------------------------------
# Each label set the name rules must get right, in its model's label order, with the class every label must get.
# LIP: Gong et al., "Look into Person", CVPR 2017 (20 labels, as SCHP's simple_extractor.py lists them).
LIP = {
    "Background": "background", "Hat": "hat", "Hair": "hair", "Glove": "accessories", "Sunglasses": "accessories",
    "Upper-clothes": "upper", "Dress": "dress", "Coat": "upper", "Socks": "shoes", "Pants": "lower",
    "Jumpsuits": "dress", "Scarf": "accessories", "Skirt": "lower", "Face": "face", "Left-arm": "skin",
    "Right-arm": "skin", "Left-leg": "skin", "Right-leg": "skin", "Left-shoe": "shoes", "Right-shoe": "shoes",
}  # fmt: skip
# CIHP: Gong et al., "Instance-level Human Parsing via Part Grouping Network", ECCV 2018: LIP's 20 categories,
# spelled as mmsegmentation's CIHPDataset spells them ("UpperClothes").
CIHP = {
    "Background": "background", "Hat": "hat", "Hair": "hair", "Glove": "accessories", "Sunglasses": "accessories",
    "UpperClothes": "upper", "Dress": "dress", "Coat": "upper", "Socks": "shoes", "Pants": "lower",
    "Jumpsuits": "dress", "Scarf": "accessories", "Skirt": "lower", "Face": "face", "Left-arm": "skin",
    "Right-arm": "skin", "Left-leg": "skin", "Right-leg": "skin", "Left-shoe": "shoes", "Right-shoe": "shoes",
}  # fmt: skip
# ATR: Liang et al., "Deep Human Parsing with Active Template Regression", TPAMI 2015 (18 labels, as the dataset
# names them).
ATR = {
    "background": "background", "hat": "hat", "hair": "hair", "sunglass": "accessories", "upper-clothes": "upper",
    "skirt": "lower", "pants": "lower", "dress": "dress", "belt": "accessories", "left-shoe": "shoes",
    "right-shoe": "shoes", "face": "face", "left-leg": "skin", "right-leg": "skin", "left-arm": "skin",
    "right-arm": "skin", "bag": "accessories", "scarf": "accessories",
}  # fmt: skip
# Pascal-Person-Part: Chen et al., "Detect What You Can", CVPR 2014, its parts grouped into 7 labels (as SCHP's
# simple_extractor.py lists them). Body parts, not garments: the torso is taken as clothing (it is clothed in nearly
# every re-ID image), the limbs as skin (often bare: repainting them would change the person).
PASCAL_PERSON_PART = {
    "Background": "background", "Head": "face", "Torso": "upper", "Upper Arms": "skin", "Lower Arms": "skin",
    "Upper Legs": "skin", "Lower Legs": "skin",
}  # fmt: skip
# mattmdjaga/segformer_b2_clothes (the default --parser-model), its model card's id2label: ATR's 18, capitalised.
SEGFORMER_B2_CLOTHES = {
    "Background": "background", "Hat": "hat", "Hair": "hair", "Sunglasses": "accessories", "Upper-clothes": "upper",
    "Skirt": "lower", "Pants": "lower", "Dress": "dress", "Belt": "accessories", "Left-shoe": "shoes",
    "Right-shoe": "shoes", "Face": "face", "Left-leg": "skin", "Right-leg": "skin", "Left-arm": "skin",
    "Right-arm": "skin", "Bag": "accessories", "Scarf": "accessories",
}  # fmt: skip
# The demo's shipped masks (dlcr_data.demo.labels), read by the oracle parser.
DEMO_LABEL_MAP = {
    "background": "background", "hair": "hair", "face": "face", "upper_clothes": "upper", "lower_clothes": "lower",
    "shoes": "shoes", "arms": "skin", "legs": "skin",
}  # fmt: skip
LABEL_SETS = {"LIP": LIP, "CIHP": CIHP, "ATR": ATR, "Pascal-Person-Part": PASCAL_PERSON_PART}
LABEL_SETS |= {"segformer_b2_clothes": SEGFORMER_B2_CLOTHES}


@pytest.mark.parametrize("expected", LABEL_SETS.values(), ids=LABEL_SETS)
def test_name_rules_give_every_label_of_a_known_label_set_its_class(expected):
    assert {label: canonical_class(label) for label in expected} == expected
    table, unmapped = resolve_label_map(expected)
    assert (table, unmapped) == (expected, ())
    lut = label_lut(dict(enumerate(expected)), table)
    assert [CLASSES[i] for i in lut] == list(expected.values())


def test_the_tiny_segformer_has_segformer_b2_clothes_labels():
    assert list(SEGFORMER_B2_CLOTHES) == list(CLOTHES_LABELS)


def test_lip_labels_in_the_default_mask_are_dlcrs_schp_mask():
    """docs/dlcr-method.md §2.3: every clothing item, gloves and sunglasses included, and the shoes."""
    masked = {label for label, cls in LIP.items() if cls in DEFAULT_MASK_CLASSES}
    assert masked == {"Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks", "Pants", "Jumpsuits"} | {
        "Scarf",
        "Skirt",
        "Left-shoe",
        "Right-shoe",
    }


def test_pascal_person_part_limbs_are_skin_and_stay_out_of_the_mask():
    """The upper/lower clothing rules used to win over the skin rule: bare arms and legs were repainted."""
    table, _ = resolve_label_map(PASCAL_PERSON_PART)
    garment_map = label_lut(dict(enumerate(PASCAL_PERSON_PART)), table)[None, :]  # one pixel per label
    mask = clothing_mask(garment_map)[0]
    assert [label for label, masked in zip(PASCAL_PERSON_PART, mask, strict=True) if masked] == ["Torso"]


@pytest.mark.parametrize(
    ("label", "cls"),
    [
        ("Torso-skin", "skin"),  # VIP and CCIHP: the bare trunk
        ("leftArm", "skin"),  # camelCase spellings of ATR and CIHP
        ("rightShoe", "shoes"),
        ("upperclothes", "upper"),
        ("left_leg", "skin"),
        ("Leggings", "lower"),  # not a leg
        ("Handbag", "accessories"),  # not a hand
        ("T-shirt", "upper"),
        ("Mystery", None),
    ],
)
def test_name_rules_read_other_spellings(label, cls):
    assert canonical_class(label) == cls


def test_label_map_overrides_the_rules_label_by_label():
    labels = ["Background", "Torso", "Upper Arms", "Mystery", "Thing"]
    table, unmapped = resolve_label_map(labels, {"Torso": "skin", "Upper Arms": "upper", "Thing": None})
    assert table == {"Background": "background", "Torso": "skin", "Upper Arms": "upper", "Mystery": None, "Thing": None}
    assert unmapped == ("Mystery",)  # "Thing" has no class on purpose: nothing to warn about
    lut = label_lut(dict(enumerate(labels)), table)
    assert [CLASSES[i] for i in lut] == ["background", "skin", "upper", "background", "background"]


def test_label_map_naming_a_label_the_model_lacks_is_a_one_line_error(tiny_segformer):
    with pytest.raises(UserError) as info:
        resolve_label_map(PASCAL_PERSON_PART, {"Torsoo": "skin"}, model="some/model")
    message = str(info.value)
    assert "\n" not in message and "--label-map names 'Torsoo'" in message
    assert "some/model" in message and "'Torso'" in message and "'Lower Legs'" in message
    with pytest.raises(UserError, match=f"'Torso', not among the labels of {tiny_segformer} .*'Left-shoe'"):
        parser_for("segformer", "ltcc", parser_model=str(tiny_segformer), label_map='{"Torso": "skin"}')


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"Torso": "skin",}', "not valid JSON (Expecting property name enclosed in double quotes: line 1 column"),
        ('["Torso", "skin"]', 'expected one JSON object {"model label": "garment class" or null}, not a list'),
        ('{"Torso": "shirt"}', "label 'Torso' has unknown class 'shirt'; choose from background, hair, face, skin"),
        ('{"Torso": 3}', "label 'Torso' has unknown class 3; choose from"),
        (None, "cannot read the file (No such file or directory); pass a JSON file"),
    ],
)
def test_bad_label_map_files_are_one_line_user_errors(tmp_path, content, problem):
    path = tmp_path / "map.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as info:
        BuildOptions("demo", tmp_path / "out", label_map=str(path)).resolved()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"--label-map {path}: {problem}"), message


def test_the_fingerprint_records_the_label_maps_content_not_its_path(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"Torso": "skin", "Head": null}')
    b.write_text('{\n  "Head": null,\n  "Torso": "skin"\n}\n')  # the same map, written otherwise
    fingerprints = [BuildOptions("demo", tmp_path, label_map=str(p)).resolved().fingerprint() for p in (a, b)]
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[0]["label_map"] == '{"Head": null, "Torso": "skin"}'
    assert BuildOptions.from_dict(fingerprints[0]).resolved().fingerprint() == fingerprints[0]  # a recorded config
    b.write_text('{"Torso": "upper"}')
    assert BuildOptions("demo", tmp_path, label_map=str(b)).resolved().fingerprint() != fingerprints[0]
    assert BuildOptions("demo", tmp_path).resolved().fingerprint()["label_map"] is None


def test_segformer_label_map_overrides_the_rules(tiny_segformer):
    parser = SegformerParser(str(tiny_segformer), label_map={"Left-arm": "upper", "Bag": None})
    assert parser.label_map == SEGFORMER_B2_CLOTHES | {"Left-arm": "upper", "Bag": None}
    assert parser.unmapped == ()
    for label, cls in (("Left-arm", "upper"), ("Bag", "background"), ("Right-arm", "skin")):
        force_label(parser.model, label)  # in memory only: this label wins everywhere
        assert (parser.parse(random_images([(24, 48)]), [], Path())[0] == CLASS_ID[cls]).all(), label


def test_oracle_label_map_is_the_demos_and_can_be_overridden(demo):
    root, records = demo
    assert (parser_for("oracle", "demo").label_map, parser_for("oracle", "demo").unmapped) == (DEMO_LABEL_MAP, ())
    parser = parser_for("oracle", "demo", label_map='{"arms": "upper"}')
    assert parser.label_map == DEMO_LABEL_MAP | {"arms": "upper"}
    masks = {r.path: np.asarray(Image.open(root / "masks" / r.path)) for r in records}
    record = next(r for r in records if (masks[r.path] == ARMS).any())  # someone with bare arms
    labels = masks[record.path]
    garment_map = parser.parse([Image.open(root / record.path).convert("RGB")], [record], root)[0]
    assert (garment_map[labels == ARMS] == CLASS_ID["upper"]).all()
    assert (garment_map[labels == LEGS] == CLASS_ID["skin"]).all()


# -- label maps in a build: printed, recorded in the manifest, shown in the card ----------------------------------
class Notes(Reporter):
    """Keeps what a build tells the user."""

    def __init__(self) -> None:
        self.notes: list[tuple[str, bool]] = []

    def note(self, text: str, *, warning: bool = False) -> None:
        self.notes.append((text, warning))


@pytest.fixture(scope="module")
def mystery_segformer(tmp_path_factory) -> Path:
    """The tiny SegFormer with "Bag" renamed "Mystery" (a label no rule knows); "Upper-clothes" wins everywhere, so
    every image has a mask and the build has samples."""
    folder = save_tiny_segformer(tmp_path_factory.mktemp("segformer-mystery"), winner="Upper-clothes")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {i: "Mystery" if name == "Bag" else name for i, name in config["id2label"].items()}
    config["label2id"] = {name: i for i, name in config["id2label"].items()}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def segformer_build(demo_root_for, mystery_segformer, tmp_path_factory) -> tuple[Path, dict, list[tuple[str, bool]]]:
    """A demo build parsed by the mystery SegFormer: (out, manifest entry, the notes it gave)."""
    out, reporter = tmp_path_factory.mktemp("segformer-build") / "out", Notes()
    opts = BuildOptions("demo", out, root=str(demo_root_for(TINY_DEMO)), parser="segformer", variants=1)
    entry = build(replace(opts, parser_model=str(mystery_segformer)), reporter)
    return out, entry, reporter.notes


MYSTERY_MAP = {("Mystery" if k == "Bag" else k): (None if k == "Bag" else v) for k, v in SEGFORMER_B2_CLOTHES.items()}


def test_the_parse_stage_prints_the_label_map_and_warns_about_unmapped_labels(segformer_build, mystery_segformer):
    _, _, notes = segformer_build
    parse_notes = [n for n in notes if n[0].startswith("parse: ") or "label" in n[0]]
    assert parse_notes == [
        (
            f"parse: segformer {mystery_segformer} labels -> garment classes (* = in the mask)\n"
            "  background            <- Background\n"
            "  hair                  <- Hair\n"
            "  face                  <- Face\n"
            "  skin                  <- Left-leg, Right-leg, Left-arm, Right-arm\n"
            "  upper *               <- Upper-clothes\n"
            "  lower *               <- Skirt, Pants\n"
            "  dress *               <- Dress\n"
            "  shoes *               <- Left-shoe, Right-shoe\n"
            "  accessories *         <- Sunglasses, Belt, Scarf\n"
            "  hat                   <- Hat\n"
            "  no class (background) <- Mystery",
            False,
        ),
        (
            "1 parser label(s) match no garment class and are painted as background: Mystery; "
            "give them a class (or null) with --label-map FILE.json",
            True,
        ),
    ]


def test_the_manifest_entry_records_the_label_map(segformer_build):
    out, entry, _ = segformer_build
    assert entry["totals"]["samples"] > 0
    assert entry["label_map"] == MYSTERY_MAP
    assert json.loads((out / "manifest.json").read_text())["builds"]["demo"]["label_map"] == MYSTERY_MAP
    # The work cache keeps the model's label order (the manifest's JSON sorts keys).
    assert list(json.loads((out / "work" / "demo" / LABEL_MAP_FILE).read_text())) == list(MYSTERY_MAP)


def test_the_card_shows_the_label_map(segformer_build):
    out, _, _ = segformer_build
    card = (out / "README.md").read_text()
    table = [
        "| garment class | in the mask | parser labels |",
        "|---|---|---|",
        "| background | no | Background |",
        "| hair | no | Hair |",
        "| face | no | Face |",
        "| skin | no | Left-arm, Left-leg, Right-arm, Right-leg |",
        "| upper | yes | Upper-clothes |",
        "| lower | yes | Pants, Skirt |",
        "| dress | yes | Dress |",
        "| shoes | yes | Left-shoe, Right-shoe |",
        "| accessories | yes | Belt, Scarf, Sunglasses |",
        "| hat | no | Hat |",
        "| none (painted as background) | no | Mystery |",
    ]
    assert "\n".join(table) + "\n" in card


def test_a_demo_build_records_the_oracles_label_map(tiny_build):
    entry = json.loads((tiny_build / "manifest.json").read_text())["builds"]["demo"]
    assert entry["label_map"] == DEMO_LABEL_MAP
    assert "| skin | no | arms, legs |" in (tiny_build / "README.md").read_text()


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
