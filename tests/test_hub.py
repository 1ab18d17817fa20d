"""Publishing: the out folder is the dataset repo; dry-run staging loads back; uploads are checked offline."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from unittest import mock

import datasets
import numpy as np
import pytest
import webdataset as wds
from fixtures import IMAGE_SIZE, write_ltcc
from huggingface_hub import HfApi
from PIL import Image
from typer.testing import CliRunner

from dlcr_data import hub, load_expanded, loaders
from dlcr_data.build import BuildOptions, build
from dlcr_data.build.release import ReleaseOptions, import_release
from dlcr_data.cli import app
from dlcr_data.errors import UserError
from dlcr_data.records import SAMPLE_SCHEMA


@pytest.fixture
def out(tiny_build, tmp_path) -> Path:
    """A private copy of the build, free to break."""
    return Path(shutil.copytree(tiny_build, tmp_path / "out"))


@pytest.fixture(scope="module")
def staged(tiny_build, tmp_path_factory) -> Path:
    """Staged from a copy: push_to_hub re-renders the card (repo id) in the folder it pushes, and `tiny_build` is
    shared read-only."""
    folder = tmp_path_factory.mktemp("s")
    out = Path(shutil.copytree(tiny_build, folder / "out"))
    return hub.push_to_hub(out, "me/dlcr-demo", dry_run=True, stage_dir=folder / "staged").staged


def manifest_counts(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shard in json.loads((out / "manifest.json").read_text())["builds"]["demo"]["shards"]:
        counts[shard["split"]] = counts.get(shard["split"], 0) + shard["samples"]
    return counts


def test_staged_tree_is_exactly_the_upload(tiny_build, staged):
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == hub.upload_files(tiny_build)
    assert {"README.md", "manifest.json", "preview.png"} <= set(files)
    assert not [f for f in files if f.startswith("work/") or "-source/" in f]  # caches and sources stay local
    assert all(f.endswith(".tar") for f in files if f.startswith("demo/"))


def test_load_dataset_on_the_staged_tree(tiny_build, staged):
    for split, rows in manifest_counts(tiny_build).items():
        ds = datasets.load_dataset(str(staged), "demo", split=split)
        assert ds.num_rows == rows
        assert set(ds.features["json"]) == set(SAMPLE_SCHEMA)
        for row in ds.select(range(0, rows, max(1, rows // 7))):
            meta = row["json"]
            assert (meta["gate_score"] is None) == (meta["gate_model"] == "")  # null only when not gated
            assert all(v is not None for k, v in meta.items() if k != "gate_score")  # no other null field
            assert row["json"]["split"] == split
            assert row["png"].size == row["mask.png"].size == (row["json"]["width"], row["json"]["height"])
            assert row["__key__"] == f"{row['json']['source_key']}_v{row['json']['variant']}"


def test_streaming_and_plain_webdataset(staged):
    stream = datasets.load_dataset(str(staged), "demo", split="train", streaming=True)
    first = next(iter(stream))
    assert first["png"].mode == "RGB" and set(first["json"]) == set(SAMPLE_SCHEMA)
    urls = sorted(str(p) for p in (staged / "demo").glob("train-*.tar"))
    # No `.decode("pickle")`: only images and json are decoded; members are never unpickled.
    ds = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "png", "mask.png", "json")
    key, image, mask, meta = next(iter(ds))
    assert isinstance(image, Image.Image) and isinstance(mask, Image.Image) and meta["source_key"] in key


def test_load_expanded_pairs_sources_with_their_variants(tiny_build, staged):
    expanded = load_expanded(staged, "demo")
    assert len(expanded) == manifest_counts(tiny_build)["train"]
    key = expanded.source_keys[0]
    variants = expanded.variants_of(key)
    assert [v["json"]["variant"] for v in variants] == [0, 1, 2]
    assert {v["json"]["source_key"] for v in variants} == {key}
    assert sum(len(v) for v in expanded.index.values()) == len(expanded)


# -- uploads, checked on an autospec'd HfApi --------------------------------------------------------------------
@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


def test_upload_calls(out, online):
    api = mock.create_autospec(HfApi, instance=True)
    result = hub.push_to_hub(out, "me/dlcr-demo", private=True, revision="v1", api=api)
    api.create_repo.assert_called_once_with("me/dlcr-demo", repo_type="dataset", private=True, exist_ok=True)
    api.create_branch.assert_called_once_with("me/dlcr-demo", repo_type="dataset", branch="v1", exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_type"] == "dataset" and kwargs["revision"] == "v1" and kwargs["folder_path"] == str(out)
    assert kwargs["allow_patterns"] == hub.UPLOAD_ALLOW
    assert "work/*" in kwargs["ignore_patterns"] and "*-source/*" in kwargs["ignore_patterns"]
    assert "README.md" in result.files and not any(f.startswith("work/") for f in result.files)


def test_include_source_uploads_originals_as_their_own_config(out, online, tmp_path):
    api = mock.create_autospec(HfApi, instance=True)
    result = hub.push_to_hub(out, "me/dlcr-demo", include_source=True, api=api)
    assert "*-source/*" not in api.upload_folder.call_args.kwargs["ignore_patterns"]
    assert any(f.startswith("demo-source/train-") for f in result.files)
    ds = datasets.load_dataset(str(out), "demo_source", split="train")
    assert ds.num_rows == len({m for m in load_expanded(out, "demo").index})  # every built source image


def source_shard_keys(folder: Path) -> dict[str, list[str]]:
    """Per split, the record keys the source shards in `folder` hold, in order."""
    keys: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            metas = [json.load(tar.extractfile(m)) for m in tar if m.name.endswith(".json")]
        keys.setdefault(path.name.split("-")[0], []).extend(m["key"] for m in metas)
    return keys


def test_source_shards_of_a_build_hold_the_sources_of_its_variants(tiny_demo, tmp_path):
    """The sources the shards hold variants of: the first --limit records per split, less one skipped (no mask)."""
    root = Path(shutil.copytree(tiny_demo, tmp_path / "raw"))
    spec = loaders.get("demo")
    loaded = spec.load(root)
    blank = spec.mask_path(loaded.root, loaded["train"][1])
    Image.fromarray(np.zeros_like(np.asarray(Image.open(blank)))).save(blank)  # no clothing: no variant
    out = tmp_path / "out"
    build(BuildOptions("demo", out, root=str(root), variants=2, limit=4, splits=("train", "query")))
    hub.write_source_shards(out, shard_samples=2)
    expected = {
        "train": [r.key for i, r in enumerate(loaded["train"][:4]) if i != 1],
        "query": [r.key for r in loaded["query"][:4]],
    }
    assert source_shard_keys(out / "demo-source") == expected


def _ltcc_release(folder: Path, records: list) -> Path:
    """A release of 2-variant strips (`X.png` + `X.txt`) for `records`."""
    strips = folder / "LTCC_ReID" / "train"
    strips.mkdir(parents=True)
    width, height = IMAGE_SIZE
    for r in records:
        Image.new("RGB", (2 * width, height), (90, 30, 200)).save(strips / Path(r.path).name)
        (strips / Path(r.path).with_suffix(".txt").name).write_text("Red shirt| Blue jeans| Black shoes\n" * 2)
    return folder


def test_source_shards_of_an_imported_release_hold_its_originals(tmp_path):
    """The originals of the imported strips (not the first N training images: a release's limit counts strips); no
    recorded source root (imported without --root): a one-line error, nothing written."""
    raw = write_ltcc(tmp_path / "raw")
    records = loaders.load("ltcc", raw.root)["train"]
    release = _ltcc_release(tmp_path / "release", [records[1], records[3]])
    out = tmp_path / "out"
    import_release(ReleaseOptions("ltcc", release, out, root=str(raw.root), variants=2))
    [path] = hub.write_source_shards(out)
    assert source_shard_keys(out / "ltcc-source") == {"train": [records[1].key, records[3].key]}
    with tarfile.open(path) as tar:
        first = tar.extractfile(f"{records[1].key}.png").read()
    assert first == (raw.root / records[1].path).read_bytes()

    bare = tmp_path / "bare"
    import_release(ReleaseOptions("ltcc", release, bare, variants=2))
    with pytest.raises(UserError, match="no source root is recorded for ltcc") as err:
        hub.write_source_shards(bare)
    assert "\n" not in str(err.value) and not (bare / "ltcc-source").exists()


def test_cli_include_source_prints_a_licence_warning(out, tmp_path):
    result = CliRunner().invoke(
        app, ["push-to-hub", str(out), "me/x", "--dry-run", "--include-source", "--stage-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert "licence" in result.stderr and "ORIGINAL" in result.stderr


@pytest.mark.parametrize("damage", ["missing", "sha", "unfinished", "no-manifest", "temp"])
def test_incomplete_builds_are_refused_before_any_upload(out, online, damage):
    shard = sorted((out / "demo").glob("train-*.tar"))[0]
    if damage == "missing":
        shard.unlink()
    elif damage == "sha":
        shard.write_bytes(shard.read_bytes()[:-512])
    elif damage == "unfinished":
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["builds"]["demo"]["complete"] = False
        (out / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "no-manifest":
        (out / "manifest.json").unlink()
    else:
        (out / "demo" / ".train-00009.tar.tmp-1").write_bytes(b"partial")
    api = mock.create_autospec(HfApi, instance=True)
    with pytest.raises(UserError, match=r"not a (complete|finished) build"):
        hub.push_to_hub(out, "me/x", api=api)
    assert not api.method_calls  # nothing created, nothing uploaded


def test_offline_and_missing_token_are_one_line_errors(out, monkeypatch):
    runner = CliRunner()
    offline = runner.invoke(app, ["push-to-hub", str(out), "me/x"])  # conftest sets HF_HUB_OFFLINE=1
    assert offline.exit_code == 2 and "offline" in offline.stderr
    assert len(offline.stderr.strip().splitlines()) == 1
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    no_token = runner.invoke(app, ["push-to-hub", str(out), "me/x"])
    assert no_token.exit_code == 2 and "HF_TOKEN" in no_token.stderr
    assert len(no_token.stderr.strip().splitlines()) == 1
