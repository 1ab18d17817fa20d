"""End to end through the CLI with every model backend: SegFormer, LLaVA + Llama, SD inpainting (tiny, random).

The same code path as real weights: `dlcr-data build` loads each model folder with `from_pretrained`. The LTCC
fixture tree is rewritten with 32x64 noisy images (one tint per outfit), so the tiny SegFormer has texture to
parse and each image gets a mask that covers part of it: then "pixels outside the mask are the source's" is a
real check, not a vacuous one.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from fixtures import WRITERS, DatasetFixture
from PIL import Image
from tiny_models import as_hf_download, save_tiny_segformer, save_tiny_segformer_halves
from typer.testing import CliRunner

from dlcr_data import loaders
from dlcr_data.build.parse import clothing_mask, load_garment_map
from dlcr_data.build.shards import SAMPLE_FIELDS
from dlcr_data.cli import app
from dlcr_data.files import sha256_file

runner = CliRunner()
SIZE = (32, 64)  # W x H of the rewritten fixture images, and the generation resolution
EMPTY_MASK = "empty mask: no clothing found"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def build_args(root: Path, out: Path, parser_model: Path, sd: Path | str, *describe: object) -> list[object]:
    """`dlcr-data build ltcc` with every model backend; `describe` gives the describer options."""
    return [
        "build", "ltcc", "--out", out, "--root", root, "--parser", "segformer", "--parser-model", parser_model,
        *describe, "--generator", "diffusion", "--model", sd, "--steps", 2, "--resolution", "x".join(map(str, SIZE)),
        "--variants", 2, "--batch-size", 2,
    ]  # fmt: skip


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256)."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def read_shard(path: Path) -> dict[str, dict[str, bytes]]:
    """Sample key -> {extension: bytes}; a WebDataset key ends at the first dot of the member name."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples[key][ext] = tar.extractfile(member).read()
    return dict(samples)


def weights_hash_here(folder: Path) -> str:
    """A local model folder's weights hash, computed here independently of `dlcr_data.pretrained`: SHA-256 of the
    `sha256sum` listing of its weight files (sorted by relative path, hidden folders left out), 16 hex digits."""
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")
    relpaths = (p.relative_to(folder) for p in Path(folder).rglob("*") if p.is_file() and p.suffix in suffixes)
    files = sorted(rel.as_posix() for rel in relpaths if not any(part.startswith(".") for part in rel.parts))
    listing = "".join(f"{hashlib.sha256((folder / rel).read_bytes()).hexdigest()}  {rel}\n" for rel in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ltcc(tmp_path_factory) -> DatasetFixture:
    """The LTCC fixture layout (3 splits, 5 train images, 3 train outfits) with 32x64 tinted-noise images."""
    fx = WRITERS["ltcc"](tmp_path_factory.mktemp("data"), broken=False)
    rng = np.random.default_rng(0)
    tints = {cid: rng.integers(0, 256, 3) for cid in sorted({v[3] for v in fx.records.values()})}
    for rel, (_, _, _, clothes_id) in sorted(fx.records.items()):
        noise = rng.integers(0, 256, (SIZE[1], SIZE[0], 3))
        pixels = (noise + tints[clothes_id]) // 2
        Image.fromarray(pixels.astype(np.uint8)).save(fx.root / rel)
    return fx


@pytest.fixture(scope="module")
def sources(ltcc) -> dict[str, tuple]:
    """Train record key -> (record, source pixels), read through the library's own loader."""
    loaded = loaders.load("ltcc", ltcc.root)
    return {r.key: (r, np.asarray(Image.open(loaded.root / r.path).convert("RGB"))) for r in loaded.splits["train"]}


@pytest.fixture(scope="module")
def halves_segformer(ltcc, sources, tmp_path_factory) -> Path:
    """Background vs Upper-clothes, about half each: every source gets a partial, non-empty clothing mask."""
    images = [Image.fromarray(pixels) for _, pixels in sources.values()]
    return save_tiny_segformer_halves(tmp_path_factory.mktemp("segformer-halves"), images)


@pytest.fixture(scope="module")
def built(ltcc, halves_segformer, tiny_llava, tiny_llm, tiny_sd, tmp_path_factory):
    """One full build (parse, describe with LLaVA + Llama, plan, SD inpainting, shards); (CLI result, out)."""
    out = tmp_path_factory.mktemp("build") / "out"
    describe = ("--describer", "vlm", "--vlm-model", tiny_llava, "--llm-model", tiny_llm)
    result = invoke(*build_args(ltcc.root, out, halves_segformer, tiny_sd, *describe))
    assert result.exit_code == 0, result.output  # else every test here errors with the build's own message
    return result, out


# -- the full build ---------------------------------------------------------------------------------------------
def test_build_exits_0_and_the_manifest_lists_its_shards_with_their_sha256(built, sources):
    result, out = built
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "manifest.json").read_text())["builds"]["ltcc"]
    assert entry["complete"] and entry["skipped"] == []  # every source has a non-empty mask
    assert entry["outfits"] == 3 and entry["totals"]["samples"] == 2 * len(sources)
    shards = entry["shards"]
    assert shards and sorted(s["path"] for s in shards) == sorted(
        str(p.relative_to(out)) for p in (out / "ltcc").glob("*.tar")
    )
    for shard in shards:
        path = out / shard["path"]
        assert sha256_file(path) == shard["sha256"] and path.stat().st_size == shard["bytes"]
        assert len(read_shard(path)) == shard["samples"]
    assert not list(out.rglob(".*.tmp-*"))  # no half-written file left behind


def test_every_sample_has_image_mask_and_json_with_the_same_fields(built, sources, tiny_sd):
    _, out = built
    samples = {k: v for tar in sorted((out / "ltcc").glob("*.tar")) for k, v in read_shard(tar).items()}
    assert sorted(samples) == sorted(f"{key}_v{k}" for key in sources for k in range(2))
    for key, members in samples.items():
        assert set(members) == {"png", "mask.png", "json"}, key
        meta = json.loads(members["json"])
        assert sorted(meta) == sorted(SAMPLE_FIELDS)  # the same field set in every sample
        assert (meta["generator"], meta["model"]) == ("diffusion", f"local:{weights_hash_here(tiny_sd)}")
        record, pixels = sources[meta["source_key"]]
        assert (meta["dataset"], meta["split"]) == ("ltcc", "train")
        assert (meta["pid"], meta["camid"]) == (record.pid, record.camid)
        assert meta["source_clothes_id"] == record.clothes_id != meta["target_clothes_id"]
        assert (meta["height"], meta["width"]) == pixels.shape[:2]


def test_pixels_outside_the_mask_are_the_source_pixels(built, sources):
    _, out = built
    samples = {k: v for tar in sorted((out / "ltcc").glob("*.tar")) for k, v in read_shard(tar).items()}
    for key, members in samples.items():
        meta = json.loads(members["json"])
        _, src = sources[meta["source_key"]]
        image = np.asarray(Image.open(io.BytesIO(members["png"])).convert("RGB"))
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"]))) > 0
        assert image.shape == src.shape and mask.shape == src.shape[:2]
        assert 0 < mask.mean() < 1, key  # a partial mask: both sides of the check below are exercised
        # The mask is the clothing mask of the parse stage's cached garment map.
        garment_map = load_garment_map(out / "work" / "ltcc" / "masks", meta["source_key"])
        np.testing.assert_array_equal(mask, clothing_mask(garment_map))
        np.testing.assert_array_equal(image[~mask], src[~mask])
        assert (image[mask] != src[mask]).any(), key  # and inside it, SD repainted


def test_outfits_jsonl_records_the_vlm_and_llm(built, tiny_llava, tiny_llm):
    _, out = built
    lines = [json.loads(line) for line in (out / "work" / "ltcc" / "outfits.jsonl").read_text().splitlines()]
    assert [x["clothes_id"] for x in lines] == ["1_1", "1_2", "2_1"]
    for x in lines:
        assert x["describer"] == "vlm" and x["models"] == {"vlm": str(tiny_llava), "llm": str(tiny_llm)}
        assert x["text"].count(" | ") == 2  # random models answer garbage: the colour fallback is recorded
        assert x["fallback"] is None or "color" in x["fallback"]


# -- empty masks and bad models ---------------------------------------------------------------------------------
def test_sources_without_clothing_are_skipped_and_the_build_fails_with_the_reason(ltcc, sources, tiny_sd, tmp_path):
    background = save_tiny_segformer(tmp_path / "segformer-background", winner="Background")
    out = tmp_path / "out"
    # The colour describer keeps this test fast: the masks matter here, not the captions.
    result = invoke(*build_args(ltcc.root, out, background, tiny_sd, "--describer", "color"))
    # no sample at all: exit 2 with the reason on one line, and no manifest entry (issue 12)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]  # besides diffusers' bar
    assert "Traceback" not in result.stderr and errors == [
        f"error: ltcc: the build produced no samples, so no manifest entry was written; {len(sources)} skipped at "
        f"generate, e.g. {EMPTY_MASK}"
    ]
    assert not (out / "manifest.json").exists()
    records = [json.loads(p.read_text()) for p in sorted((out / "work" / "ltcc" / "shards").glob("*.json"))]
    skipped = [s for r in records for s in r["skipped"]]
    assert sorted(s["path"] for s in skipped) == sorted(r.path for r, _ in sources.values())
    assert {s["reason"] for s in skipped} == {EMPTY_MASK}
    for shard in records:  # recorded in work/ (a rerun continues), but no 0-sample tar is left to upload
        assert shard["samples"] == 0 and not (out / shard["path"]).exists()


def test_bad_model_id_fails_before_any_work(ltcc, tiny_segformer, tiny_llava, tiny_llm, built, tmp_path):
    describe = ("--describer", "vlm", "--vlm-model", tiny_llava, "--llm-model", tiny_llm)  # the full command
    out = tmp_path / "out"
    result = invoke(*build_args(ltcc.root, out, tiny_segformer, "nobody/nothing", *describe))
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "\n" not in message and "--model" in message and "nobody/nothing" in message
    assert not (out / "work" / "ltcc" / "masks").exists()
    assert not out.exists() or tree(out) == {}  # no config, cache, shard or manifest either

    # Over a finished build: nothing is touched (the check runs before the out folder is claimed).
    _, done = built
    before = tree(done)
    result = invoke(*build_args(ltcc.root, done, tiny_segformer, "nobody/nothing", *describe))
    assert result.exit_code == 2 and "nobody/nothing" in result.stderr
    assert tree(done) == before


def test_manifest_records_model_ids_and_revisions(built, halves_segformer, tiny_llava, tiny_llm, tiny_sd):
    _, out = built
    models = json.loads((out / "manifest.json").read_text())["builds"]["ltcc"]["models"]
    local = {"id": None, "revision": None, "local": True}  # local folders: no Hub id, no download metadata
    assert models == {
        "parser-model": local | {"weights": weights_hash_here(halves_segformer)},
        "vlm-model": local | {"weights": weights_hash_here(tiny_llava)},
        "llm-model": local | {"weights": weights_hash_here(tiny_llm)},
        "model": local | {"weights": weights_hash_here(tiny_sd)},
    }


def test_two_datasets_share_one_out_folder_and_repo(built, demo_root_for, tiny_sd, tmp_path):
    """A demo build added to the LTCC build's folder: one manifest, one card, two configs, both load."""
    from dlcr_data import hub
    from dlcr_data.build import BuildOptions, build
    from dlcr_data.demo import DemoConfig

    out = Path(shutil.copytree(built[1], tmp_path / "out"))
    demo_root = demo_root_for(DemoConfig(num_ids=4, images_per_camera=1))
    build(BuildOptions("demo", out, root=str(demo_root), variants=2))
    result = hub.push_to_hub(out, "me/dlcr", dry_run=True, stage_dir=tmp_path / "staged")
    assert set(result.counts) == {"demo", "ltcc"} and all(n > 0 for c in result.counts.values() for n in c.values())
    card = (result.staged / "README.md").read_text()
    assert "config_name: demo" in card and "config_name: ltcc" in card
    assert f"local folder, weights `{weights_hash_here(tiny_sd)}`" in card
    assert "licence-gated source datasets (ltcc)" in card


# -- provenance: local model folders are published by their weights hash, never by path -------------------------
def test_local_model_folders_are_published_by_weights_hash_and_download_commit(
    tiny_demo, tiny_sd, tiny_clip, tmp_path, tmp_path_factory
):
    """SD from a folder laid out as `hf download --local-dir` leaves it, CLIP body shape and a re-ID gate from plain
    local folders: the card, the manifest and every sample name them by weights hash (and the download's commit),
    and no absolute path is published anywhere."""
    from dlcr_data.build import BuildOptions, build
    from dlcr_data.manifest import source_root
    from dlcr_data.reid.checkpoints import save_checkpoint
    from dlcr_data.reid.model import ReIDConfig, ReIDModel

    commit = "3f2a" * 10
    sd = as_hf_download(Path(shutil.copytree(tiny_sd, tmp_path / "sd-inpainting")), commit)
    config = ReIDConfig(scratch="resnet-tiny", num_classes=6, image_size=(64, 32))
    gate = save_checkpoint(tmp_path / "gate", ReIDModel(config), config, epoch=1)
    out = tmp_path / "out"
    options = {"generator": "diffusion", "model": str(sd), "steps": 1, "resolution": SIZE, "variants": 1}
    options |= {"body_shape": str(tiny_clip), "identity_gate": str(gate), "gate_threshold": -1.0}
    entry = build(BuildOptions("demo", out, root=str(tiny_demo), **options))
    sd_hash, clip_hash, gate_hash = (weights_hash_here(f) for f in (sd, tiny_clip, gate))

    published = {"README.md": (out / "README.md").read_text(), "manifest.json": (out / "manifest.json").read_text()}
    metas = [json.loads(m["json"]) for tar in sorted((out / "demo").glob("*.tar")) for m in read_shard(tar).values()]
    assert metas and entry["totals"]["samples"] == len(metas)
    published |= {f"sample {m['source_key']}": json.dumps(m) for m in metas}
    for where, text in published.items():  # no path of this session: not the models', the source's or the out's
        assert str(tmp_path_factory.getbasetemp()) not in text, where

    for m in metas:
        assert (m["model"], m["gate_model"]) == (f"local:{sd_hash}", f"local:{gate_hash}")
        assert m["body_shape_method"] == f"clip:local:{clip_hash}"
    entry = json.loads(published["manifest.json"])["builds"]["demo"]
    assert entry["models"] == {
        "model": {"id": None, "revision": commit, "weights": sd_hash, "local": True},
        "body-shape": {"id": None, "revision": None, "weights": clip_hash, "local": True},
        "identity-gate": {"id": None, "revision": None, "weights": gate_hash, "local": True},
    }
    assert "root" not in entry["config"] and "source_root" not in entry
    assert (entry["config"]["model"], entry["config"]["identity_gate"]) == (f"local:{sd_hash}", f"local:{gate_hash}")
    assert entry["gate"]["model"] == f"local:{gate_hash}" and entry["body_shape"]["method"] == f"clip:local:{clip_hash}"
    assert source_root(out, "demo", entry) == str(tiny_demo)  # kept locally, for the preview and --include-source

    card = published["README.md"]
    assert f"local folder, weights `{sd_hash}`, Hub commit `{commit}` (repo id not recorded)" in card
    assert f"local folder, weights `{gate_hash}`" in card
    assert "can be\nregenerated only with weights of the same hash" in card
