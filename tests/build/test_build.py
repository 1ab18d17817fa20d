"""`dlcr-data build` on the demo: deterministic, identical across process counts, resumable after kill -9."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from demo_cases import TINY_DEMO as TINY  # `tiny_demo`'s config
from PIL import Image
from typer.testing import CliRunner

from dlcr_data import loaders
from dlcr_data.build import BuildOptions, build
from dlcr_data.build.shards import SAMPLE_FIELDS
from dlcr_data.cli import app
from dlcr_data.demo import DemoConfig
from dlcr_data.demo.plan import Plan
from dlcr_data.errors import UserError
from dlcr_data.files import sha256_file
from dlcr_data.progress import Reporter

BIN = Path(sys.executable).parent


def tree(out: Path) -> dict[str, str]:
    """sha256 of every output file (work/ caches excluded: they are not the product)."""
    return {
        p.relative_to(out).as_posix(): sha256_file(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and "work" not in p.relative_to(out).parts
    }


def cli_build(root: Path, out: Path, *extra: str, nproc: int = 1, shard_samples: int = 12) -> list[str]:
    args = ["build", "demo", "--root", str(root), "--out", str(out), "--variants", "3"]
    args += ["--shard-samples", str(shard_samples)]
    if nproc == 1:
        return [str(BIN / "dlcr-data"), *args, *extra]
    return [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={nproc}", "-m", "dlcr_data", *args, *extra]


def run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def reference(tiny_demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    run(cli_build(tiny_demo, out))
    return out


# -- the build --------------------------------------------------------------------------------------------------
def test_shards_manifest_and_samples(reference, tiny_demo):
    manifest = json.loads((reference / "manifest.json").read_text())
    entry = manifest["builds"]["demo"]
    assert entry["complete"] and entry["config"]["variants"] == 3
    train = loaders.get("demo").load(tiny_demo)["train"]
    assert entry["totals"]["samples"] == 3 * len(train)
    for shard in entry["shards"]:
        path = reference / shard["path"]
        assert path.name.startswith("train-") and path.stat().st_size == shard["bytes"]
        assert sha256_file(path) == shard["sha256"]
    samples = list(wds.WebDataset([str(reference / s["path"]) for s in entry["shards"]], shardshuffle=False))
    assert len(samples) == entry["totals"]["samples"]
    sources = {r.key: r for r in train}
    for sample in samples[:40]:
        meta = json.loads(sample["json"])
        assert tuple(sorted(meta)) == tuple(sorted(SAMPLE_FIELDS))  # the same fields in every sample
        assert sample["__key__"] == f"{meta['source_key']}_v{meta['variant']}"
        src = np.array(Image.open(tiny_demo / sources[meta["source_key"]].path).convert("RGB"))
        out = np.array(Image.open(io.BytesIO(sample["png"])))
        mask = np.array(Image.open(io.BytesIO(sample["mask.png"]))) > 0
        assert out.shape == src.shape and (meta["width"], meta["height"]) == (src.shape[1], src.shape[0])
        assert np.array_equal(out[~mask], src[~mask])  # composited only inside the mask
        assert not np.array_equal(out[mask], src[mask])


def test_two_processes_give_identical_bytes(reference, tiny_demo, tmp_path):
    out = tmp_path / "out2"
    run(cli_build(tiny_demo, out, nproc=2))
    assert tree(out) == tree(reference)


def test_kill_9_then_rerun_is_identical(tiny_demo, tmp_path):
    small = {"shard_samples": 3}  # many small shards: the kill lands between or inside later ones
    reference = tmp_path / "reference"
    run(cli_build(tiny_demo, reference, **small))
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = cli_build(tiny_demo, out, "--batch-size", "1", **small)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "demo").glob("train-*.tar")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()  # killed before the end: the manifest comes last
    run(argv)
    assert tree(out) == tree(reference)
    assert not list(out.rglob(".*.tmp-*"))


def test_rerun_keeps_complete_shards_and_redoes_corrupted_ones(reference, tiny_demo, tmp_path):
    out = tmp_path / "again"
    run(cli_build(tiny_demo, out))
    first = out / "demo" / "train-00000.tar"
    second = out / "demo" / "train-00001.tar"
    kept_mtime = second.stat().st_mtime_ns
    first.write_bytes(first.read_bytes()[:1000])  # truncated: sha256 no longer matches
    run(cli_build(tiny_demo, out))
    assert tree(out) == tree(reference)
    assert second.stat().st_mtime_ns == kept_mtime  # a complete shard is not rewritten


def test_other_options_refuse_or_overwrite(reference, tiny_demo, tmp_path):
    out = tmp_path / "opts"
    runner = CliRunner()
    args = ["build", "demo", "--root", str(tiny_demo), "--out", str(out), "--shard-samples", "12"]
    assert runner.invoke(app, [*args, "--variants", "3"]).exit_code == 0
    refused = runner.invoke(app, [*args, "--variants", "2"])
    assert refused.exit_code == 2
    assert "other options (variants)" in refused.stderr and "--overwrite" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    replaced = runner.invoke(app, [*args, "--variants", "2", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    entry = json.loads((out / "manifest.json").read_text())["builds"]["demo"]
    assert entry["config"]["variants"] == 2
    assert entry["totals"]["samples"] == 2 * len(loaders.get("demo").load(tiny_demo)["train"])
    assert sorted(p.name for p in (out / "demo").glob("*.tar")) == sorted(Path(s["path"]).name for s in entry["shards"])


def test_bad_sources_are_skipped_and_listed(tiny_demo, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_demo, root)
    train = loaders.get("demo").load(root)["train"]
    (root / train[0].path).write_bytes(b"not a png")  # corrupt source image
    blank = root / "masks" / train[1].path  # a mask with no clothing
    Image.fromarray(np.zeros_like(np.array(Image.open(blank)))).save(blank)
    entry = build(BuildOptions("demo", tmp_path / "out", root=str(root), variants=2, shard_samples=50))
    reasons = {item["path"]: item["reason"] for item in entry["skipped"]}
    assert "unreadable image" in reasons[train[0].path]
    assert str(tmp_path) not in json.dumps(entry["skipped"])  # reasons are published: no local absolute path
    assert reasons[train[1].path] == "empty mask: no clothing found"
    assert entry["totals"]["samples"] == 2 * (len(train) - 2)


def test_query_split_and_jpg(tiny_demo, tmp_path):
    entry = build(
        BuildOptions("demo", tmp_path / "out", root=str(tiny_demo), variants=2, splits=("query",), image_format="jpg")
    )
    names = [s["path"] for s in entry["shards"]]
    assert names and all(n.startswith("demo/query-") for n in names)
    sample = next(iter(wds.WebDataset([str(tmp_path / "out" / names[0])], shardshuffle=False)))
    assert "jpg" in sample and "png" not in sample


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--splits", "val"], "has no split val"),
        (["--generator", "magic"], "unknown generator"),
        (["--mask-classes", "upper,socks"], "unknown garment class"),
        (["--resolution", "256by768"], "--resolution must look like"),
        (["--parser", "oracle", "--parser-model", "x"], "--parser-model"),
    ],
)
def test_bad_options_are_one_line_errors(tiny_demo, tmp_path, args, message):
    result = CliRunner().invoke(app, ["build", "demo", "--root", str(tiny_demo), "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_preview_contact_sheet(reference, tmp_path):
    result = CliRunner().invoke(app, ["preview", str(reference), "--n", "3", "--png", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    sheet = Image.open(tmp_path / "p.png")
    assert sheet.height > 3 * 128 and sheet.width > 5 * 64  # 3 rows of source, mask and 3 variants


def test_preview_of_an_unfinished_build_is_a_user_error(tmp_path):
    result = CliRunner().invoke(app, ["preview", str(tmp_path)])
    assert result.exit_code == 2 and "not a finished build" in result.stderr


def test_ctrl_c_leaves_only_complete_shards(tiny_demo, tmp_path):
    # Ctrl-C as soon as the first shard has its final name. The rest of this tiny build takes about a second, so
    # on a loaded machine the build can finish before the signal lands: then it is run again (a fresh folder).
    for attempt in range(3):
        out = tmp_path / f"interrupted-{attempt}"
        argv = cli_build(tiny_demo, out, "--batch-size", "1", shard_samples=3)
        # SIGINT at its default in the child: a shell that runs the suite in the background ignores SIGINT, the
        # child would inherit that, and Python would then never raise KeyboardInterrupt.
        restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=restore)
        deadline = time.monotonic() + 120
        while not list((out / "demo").glob("train-*.tar")) and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        if proc.returncode != 0:
            break
    assert proc.returncode == 130, stderr
    assert "rerun the same command to continue" in stderr and "Traceback" not in stderr
    assert not list(out.rglob(".*.tmp-*"))  # no partial shard left behind
    for shard in (out / "demo").glob("*.tar"):  # whatever has a final name is a complete, readable tar
        with tarfile.open(shard) as tar:
            names = tar.getnames()
        assert names and len(names) % 3 == 0


# -- small and odd builds: never a traceback ----------------------------------------------------------------------


def shots(config: DemoConfig, folder: str) -> list:
    """The demo plan's images of one folder in file-name order (the loader's order): the expected numbers below
    come from the plan, not from a build."""
    return sorted((s for s in Plan(config).shots if s.folder == folder), key=lambda s: s.name)


def sample_metas(out: Path, entry: dict) -> list[dict]:
    urls = [str(out / s["path"]) for s in entry["shards"]]
    return [json.loads(s["json"]) for s in wds.WebDataset(urls, shardshuffle=False)]


@pytest.mark.parametrize("limit", [1, 8, 12])
def test_limit_cuts_the_sources_never_the_target_pool(demo_root_for, tmp_path, limit):
    """The default demo's first 8 training images all wear outfit 2_1: a `--limit` inside one outfit used to leave
    no target (exit 1, IndexError). Targets come from every training outfit whatever `--limit` says; only the
    sources are parsed."""
    train = shots(DemoConfig(), "train")
    own = [s.clothes_id for s in train[:limit]]
    pool = {s.clothes_id for s in train}
    # 40 training people x 2-4 outfits (the plan's count, checked against the rendered files in tests/demo)
    assert len(pool) == 122 and set(own) == ({"2_1"} if limit <= 8 else {"2_1", "2_2"})
    out = tmp_path / "out"
    args = ["build", "demo", "--root", str(demo_root_for(DemoConfig())), "--out", str(out), "--limit", str(limit)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    entry = json.loads((out / "manifest.json").read_text())["builds"]["demo"]
    assert entry["complete"] and entry["outfits"] == 122 and entry["skipped"] == []
    assert entry["totals"]["samples"] == 10 * limit  # the default 10 variants of each source
    targets: dict[str, list[str]] = {}
    for meta in sample_metas(out, entry):
        assert meta["target_clothes_id"] in pool and meta["target_clothes_id"] != meta["source_clothes_id"]
        targets.setdefault(meta["source_key"], []).append(meta["target_clothes_id"])
    assert len(targets) == limit and all(len(set(t)) == 10 for t in targets.values())  # 121 other outfits: distinct
    assert len(list((out / "work" / "demo" / "masks").glob("*.png"))) == limit  # oracle + recolor: no pool parsing
    assert (out / "README.md").is_file() and (out / "preview.png").is_file()


def one_outfit_pool(tiny_demo: Path, tmp_path: Path) -> tuple[Path, str, list[str]]:
    """A copy of the tiny demo whose train split keeps one outfit: (root, that outfit, its train image paths)."""
    train = shots(TINY, "train")
    outfit = train[0].clothes_id
    kept = [f"train/{s.name}" for s in train if s.clothes_id == outfit]
    root = Path(shutil.copytree(tiny_demo, tmp_path / "one-outfit"))
    for s in train:
        if s.clothes_id != outfit:
            (root / "train" / s.name).unlink()
    return root, outfit, kept


def test_a_one_outfit_pool_lists_the_sources_without_target_as_skipped(tiny_demo, tmp_path):
    root, outfit, kept = one_outfit_pool(tiny_demo, tmp_path)
    queries = shots(TINY, "query")  # test identities: none wears the one training outfit
    # 3 test people in 8 outfits, 2 queries each (`demo.plan`)
    assert len(kept) == 4 and len(queries) == 16 and outfit not in {s.clothes_id for s in queries}
    out = tmp_path / "out"
    result = CliRunner().invoke(app, cli_build(root, out, "--splits", "train,query")[1:])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "manifest.json").read_text())["builds"]["demo"]
    reason = f"no target outfit: the training pool holds no outfit but its own ({outfit})"
    assert entry["skipped"] == [{"path": p, "reason": reason, "stage": "plan"} for p in kept]
    assert entry["outfits"] == 1 and entry["totals"]["samples"] == 3 * len(queries)
    assert {m["target_clothes_id"] for m in sample_metas(out, entry)} == {outfit}
    assert "skipped source items: 4 (4 no target outfit)" in (out / "README.md").read_text()


def test_a_build_without_samples_exits_2_and_writes_no_entry(tiny_demo, tmp_path):
    """Every source skipped at plan: one line, exit 2, no `complete: true`; what was there (another dataset's entry)
    and what was made (the work/ caches) stay."""
    root, outfit, kept = one_outfit_pool(tiny_demo, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    other = json.dumps({"format": "dlcr-data/build/1", "builds": {"ltcc": {"complete": True, "shards": []}}})
    (out / "manifest.json").write_text(other)
    result = CliRunner().invoke(app, cli_build(root, out)[1:])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: demo: the build produced no samples, so no manifest entry was written; 4 skipped at plan, e.g. "
        f"no target outfit: the training pool holds no outfit but its own ({outfit})"
    )
    assert (out / "manifest.json").read_text() == other
    masks = sorted(p.name for p in (out / "work" / "demo" / "masks").glob("*.png"))
    assert masks == sorted(p.replace("/", "_") for p in kept)  # named by record key


def test_sources_all_skipped_at_generation_give_no_entry(tiny_demo, tmp_path):
    """Every query mask blank: the build fails with the reason; its 0-sample shard is removed from OUT/demo/ (no
    entry lists it, and push-to-hub's `*/*.tar` would upload it), the work/ caches (its record too) stay."""
    root = Path(shutil.copytree(tiny_demo, tmp_path / "blank"))
    for s in shots(TINY, "query"):
        mask = root / "masks" / "query" / s.name
        Image.fromarray(np.zeros_like(np.array(Image.open(mask)))).save(mask)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"no samples.*; 16 skipped at generate, e.g. empty mask: no clothing found$"):
        build(BuildOptions("demo", out, root=str(root), variants=2, splits=("query",)))
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.tar")) and not (out / "demo").exists()
    [record] = [json.loads(p.read_text()) for p in (out / "work" / "demo" / "shards").glob("*.json")]
    assert record["path"] == "demo/query-00000.tar" and record["samples"] == 0


# -- progress bars advance as work completes ---------------------------------------------------------------------
def test_every_stage_advances_after_its_work(tiny_demo, tmp_path, monkeypatch):
    """At each advance, the items it counts are done: their garment maps and outfit texts are cached on disk, their
    variants generated."""
    from dlcr_data.build.generate.recolor import RecolorGenerator

    out = tmp_path / "out"
    work = out / "work" / "demo"
    generated: list[int] = []
    generate = RecolorGenerator.generate

    def counting(self, batch):
        images = generate(self, batch)
        generated.append(len(images))
        return images

    monkeypatch.setattr(RecolorGenerator, "generate", counting)
    done = {
        "parse": lambda: len(list((work / "masks").glob("*.png"))),
        "describe": lambda: len(list((work / "outfits").glob("*.json"))),
        "generate": lambda: sum(generated),
    }
    seen: dict[str, list[tuple[int, int]]] = {}  # stage -> (items done, items advanced) at each advance

    class Recording(Reporter):
        def stage(self, name: str, total: int):
            advanced = [0]

            def advance(n: int) -> None:
                advanced[0] += n
                seen.setdefault(name, []).append((done[name](), advanced[0]))

            return advance

    build(BuildOptions("demo", out, root=str(tiny_demo), variants=2, limit=10, batch_size=4), Recording())
    assert seen["parse"] == [(4, 4), (8, 8), (10, 10)]  # 10 sources, batches of 4
    outfits = len({s.clothes_id for s in shots(TINY, "train")})  # every training outfit, one at a time
    assert outfits == 6 and seen["describe"] == [(n, n) for n in range(1, outfits + 1)]
    assert seen["generate"] == [(4, 4), (8, 8), (12, 12), (16, 16), (20, 20)]  # 20 variants, batches of 4
