"""The parse stage's label maps (model label -> garment class): the rules for known label sets, `--label-map`
overrides, and where a map shows (printed, manifest, card)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from label_sets import DEMO_LABEL_MAP, LABEL_SETS, LIP, PASCAL_PERSON_PART, SEGFORMER_B2_CLOTHES
from parse_cases import TINY_DEMO, parser_for, random_images
from PIL import Image
from tiny_models import CLOTHES_LABELS, force_label, save_tiny_segformer

from dlcr_data.build import BuildOptions, build
from dlcr_data.build.parse import (
    LABEL_MAP_FILE,
    SegformerParser,
    clothing_mask,
    label_lut,
    resolve_label_map,
)
from dlcr_data.demo.labels import ARMS, LEGS
from dlcr_data.errors import UserError
from dlcr_data.progress import Reporter
from dlcr_data.vocab.garments import CLASS_ID, CLASSES, DEFAULT_MASK_CLASSES, canonical_class

# -- label maps: model label -> garment class ----------------------------------------------------------------------


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
