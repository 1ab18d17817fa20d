"""The dataset card: YAML that `load_dataset` reads as declared, plain-data context, every template branch."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from typer.testing import CliRunner

from dlcr_data.cards import render_card
from dlcr_data.cards.context import CARD_IDENTITIES, card_context, card_metadata
from dlcr_data.cards.preview import contact_sheet
from dlcr_data.cli import app
from dlcr_data.errors import UserError
from dlcr_data.manifest import read_manifest, samples_per_split
from dlcr_data.records import SAMPLE_SCHEMA

# `tiny_build` (conftest.py): `build` renders its card (repo id `USER/REPO`). Read-only: tests change copies.


def test_card_yaml_round_trip(tiny_build):
    card = DatasetCard.load(tiny_build / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"  # the demo is synthetic; real sources get "other" + their terms
    assert "person-re-identification" in data["tags"] and "clothes-changing" in data["tags"]
    assert data["configs"] == [
        {
            "config_name": "demo",
            "data_files": [
                {"split": "train", "path": "demo/train-*.tar"},
                {"split": "query", "path": "demo/query-*.tar"},
            ],
            "default": True,
        }
    ]
    features = datasets.Features._from_yaml_list(data["dataset_info"][0]["features"])
    assert list(features["json"]) == list(SAMPLE_SCHEMA)
    assert "preview.png" in card.text and "load_dataset(" in card.text and "DLCR" in card.text
    train = samples_per_split(read_manifest(tiny_build)["builds"]["demo"])["train"]
    assert str(train) in card.text  # statistics come from the shards


def test_card_for_licence_gated_sources_states_inherited_terms(tiny_build):
    manifest = read_manifest(tiny_build)
    manifest["builds"]["ltcc"] = manifest["builds"]["demo"]
    data = DatasetCardData(**card_metadata(manifest)).to_dict()  # as render_card writes it
    assert data["license"] == "other" and data["license_name"] == "source-dataset-terms"
    assert [c["config_name"] for c in data["configs"]] == ["demo", "ltcc"]  # one config per dataset
    assert "extended|ltcc" in data["source_datasets"]


def test_card_context_is_plain_data(tiny_build):
    """No closures, no objects: the template gets what JSON can hold (the Markdown is all in the template)."""
    context = card_context(tiny_build, read_manifest(tiny_build))
    assert json.loads(json.dumps(context))["builds"][0]["name"] == "demo"


def test_declared_schema_wins_over_later_extra_keys(tiny_build, tmp_path):
    """A json key first seen after the first samples would be dropped by inference; the card declares them all."""
    repo = tmp_path / "repo"
    shutil.copytree(tiny_build, repo)
    shard = sorted((repo / "demo").glob("train-*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for i, (member, data) in enumerate(members):
            if member.name.endswith(".json") and i > 30:
                meta = json.loads(data)
                meta["extra_later"] = "only in later samples"
                data = json.dumps(meta).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    render_card(repo)  # README with configs + dataset_info
    ds = datasets.load_dataset(str(repo), "demo", split="train")
    assert list(ds.features["json"]) == list(SAMPLE_SCHEMA)
    rows = [row["json"] for row in ds.select_columns(["json"])]
    assert all(v is not None for meta in rows for k, v in meta.items() if k != "gate_score")  # not gated: null


def test_card_shows_models_skips_gate_and_body_shapes(tiny_build, tmp_path):
    """The branches the demo build leaves out: models with revisions, skip reasons, the gate, body-shape rows."""
    out = Path(shutil.copytree(tiny_build, tmp_path / "out"))
    manifest = read_manifest(out)
    entry = manifest["builds"]["demo"]
    entry["config"].update(parser="segformer", describer="vlm", sampler="similar", similar_fraction=0.25)
    entry["config"]["body_shape"] = "clip"
    entry["models"] = {
        "parser-model": {"id": "org/parser", "revision": "abc"},
        "vlm-model": {"id": "org/vlm", "revision": "v1"},
        "body-shape": {"id": "org/clip", "revision": "c1"},
        "identity-gate": {"id": "org/gate", "revision": "g1"},
    }
    entry["gate"] = {"threshold": 0.6, "kept": 10, "rejected": 2}
    entry["skipped"] = [{"key": "a", "reason": "no mask: empty"}, {"key": "b", "reason": "no mask"}, {"reason": "x"}]
    pids = range(CARD_IDENTITIES + 2, 0, -1)
    entry["body_shape"] = {
        "method": "clip",
        "vocabulary": "shapy",
        "words": ["tall", "short"],
        "identities": {str(p): {"images": p, "top": ["tall", "short"]} for p in pids},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    text = render_card(out, "me/x", include_source=True).read_text()
    assert "skipped source items: 3 (2 no mask, 1 x)." in text
    assert "| parse (clothing mask) | `segformer` (classes: " in text and "| `org/parser` (abc) |" in text
    assert "| describe (outfit text) | `vlm` | `org/vlm` (v1) / none (no model) |" in text  # no LLM model recorded
    assert "| plan (target outfits) | `similar` sampler (similar share 0.25) | none |" in text
    assert "| annotate body shape | `clip` | `org/clip` (c1) |" in text
    assert "| identity gate | threshold 0.6: kept 10, rejected 2 | `org/gate` (g1) |" in text
    assert "| 1 | 1 | tall, short |" in text and f"| {CARD_IDENTITIES + 1} |" not in text  # sorted by identity
    assert "… and 2 more identities" in text
    assert "over the 2 SHAPY" in text and "(`shapy`: tall, short)" in text
    data = DatasetCard(text).data.to_dict()
    assert [c["config_name"] for c in data["configs"]] == ["demo", "demo_source"]


def test_rendering_twice_gives_the_same_bytes(tiny_build, tmp_path):
    out = Path(shutil.copytree(tiny_build, tmp_path / "out"))
    first = render_card(out).read_bytes()
    assert render_card(out).read_bytes() == first == (tiny_build / "README.md").read_bytes()


def test_card_command_rerenders(tiny_build, tmp_path):
    out = Path(shutil.copytree(tiny_build, tmp_path / "out"))
    (out / "README.md").unlink()
    result = CliRunner().invoke(app, ["card", str(out), "--repo-id", "me/dlcr-demo"])
    assert result.exit_code == 0, result.output
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert card["configs"][0]["config_name"] == "demo"


# -- any valid manifest renders ---------------------------------------------------------------------------------
def without_shards(entry: dict) -> dict:
    """A valid entry that holds no shard (all its splits empty)."""
    totals = {"shards": 0, "samples": 0, "bytes": 0, "splits": {}}
    return {**entry, "shards": [], "totals": totals, "skipped": [], "body_shape": None}


def test_card_with_an_entry_without_shards_previews_and_loads_the_build_that_has_them(tiny_build, tmp_path):
    """`ccvid` sorts before `demo` and holds no shard: the preview, the YAML and "How to load" use `demo`."""
    out = Path(shutil.copytree(tiny_build, tmp_path / "out"))
    (out / "preview.png").unlink()
    manifest = read_manifest(out)
    manifest["builds"]["ccvid"] = without_shards(manifest["builds"]["demo"])
    manifest["builds"]["demo"]["shards"] = [s for s in manifest["builds"]["demo"]["shards"] if s["split"] == "query"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    text = render_card(out).read_text()
    assert (out / "preview.png").is_file() and "![Preview" in text
    data = DatasetCard(text).data.to_dict()
    assert data["configs"] == [  # a config without data files would not load: ccvid has none
        {"config_name": "demo", "data_files": [{"split": "query", "path": "demo/query-*.tar"}], "default": True}
    ]
    assert "### `ccvid`" in text and "### `demo`" in text
    last = len(manifest["builds"]["demo"]["shards"]) - 1
    assert 'load_dataset("USER/REPO", "demo", split="query")' in text
    assert f"/demo/query-{{00000..{last:05d}}}.tar" in text


def test_card_of_a_manifest_without_any_shard_has_no_preview(tiny_build, tmp_path):
    out = Path(shutil.copytree(tiny_build, tmp_path / "out"))
    (out / "preview.png").unlink()
    manifest = read_manifest(out)
    manifest["builds"]["demo"] = without_shards(manifest["builds"]["demo"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    text = render_card(out).read_text()
    assert not (out / "preview.png").exists() and "![Preview" not in text
    assert "No configuration holds a shard yet: there is nothing to load." in text
    assert "load_dataset(" not in text and DatasetCard(text).data.to_dict()["configs"] == []
    with pytest.raises(UserError, match=r"no build in manifest\.json has a shard"):
        contact_sheet(out)
    result = CliRunner().invoke(app, ["preview", str(out)])
    assert result.exit_code == 2 and "nothing to preview" in result.stderr
