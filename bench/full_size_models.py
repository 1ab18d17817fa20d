"""The build on the default models' real architectures, with random weights: nothing is downloaded, ever.

Writes, with `save_pretrained`, random-weight models of the architectures the build uses by default, from their
public hyper-parameters (written below, not downloaded):

* `sd15-inpaint`: Stable Diffusion 1.5 inpainting: UNet2DConditionModel (in_channels 9, blocks 320/640/1280/1280,
  2 layers per block, cross-attention 768, 8 heads), AutoencoderKL (128/256/512/512, 4 latent channels), CLIP
  ViT-L/14 text encoder (12 layers, 768 wide, 77 positions, vocabulary 49,408), PNDM scheduler, no safety checker;
* `segformer-b2-clothes`: SegFormer-B2 (MiT-b2: depths 3/4/6/3, widths 64/128/320/512, decoder 768) with the 18
  labels of mattmdjaga/segformer_b2_clothes, 512x512 input;
* `llava-1.5`: LLaVA-1.5-7B: CLIP ViT-L/14-336 vision tower (24 layers, 1,024 wide, 576 image tokens), the 2-layer
  GELU projector, a Llama-2/Vicuna-7B text model (4,096 wide, 11,008 MLP, 32 heads, vocabulary 32,064);
* `llama-3.1-8b`: Llama-3.1-8B-Instruct (4,096 wide, 14,336 MLP, 32 heads, 8 KV heads, vocabulary 128,256,
  llama3 RoPE scaling, 131,072 positions).

On CPU the build loads every model in fp32 and keeps the VLM and the LLM loaded together: 32 decoder layers each
need ~28 GB + ~32 GB. `--llm-layers auto` keeps all 32 layers when that fits in the memory available (with the
other stages' peak), else 4 layers per language model (everything else full size: vision tower, projector,
embeddings, LM heads, widths); the result records exactly what was reduced. Tokenizers are offline stand-ins (a
byte-level CLIP BPE vocabulary, a character-level Llama tokenizer with `<image>`), as tests/tiny_models.py builds.

The SegFormer's classifier (its last 1x1 convolution only) is recalibrated so that "Background" and
"Upper-clothes" each win on about half of the source pixels: random logits are nearly flat, and an all-background
map would skip every source, an all-clothing one would make "outside-mask pixels unchanged" vacuous.

Sources: an LTCC-layout tree of demo images (2 identities x 2 outfits x 1 image in train). Then, through the CLI:

    dlcr-data build ltcc --root TREE --out OUT --limit 2 --variants 1 --steps 1 --captions-per-outfit 1
        --parser segformer --parser-model DIR --describer vlm --vlm-model DIR --llm-model DIR
        --generator diffusion --model DIR            (256x768, DLCR's resolution)

in a fresh process whose stages are timed and whose peak RSS per stage is read from /proc (VmHWM, reset at each
stage boundary). The shards are then checked as the tests do (every sample loads; outside the mask the pixels are
the source's; the mask is the cached garment map's clothing mask).

    .venv/bin/python bench/full_size_models.py                    # ~8 min on 2 cores, 16.4 GiB peak (4-layer LMs)
    .venv/bin/python bench/full_size_models.py --llm-layers 32    # the full VLM + LLM (needs ~64 GB in fp32)
"""

from __future__ import annotations

import argparse
import gc
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import write_result
from _random_models import (
    FULL_LAYERS,
    LLAMA_FIXED,
    LLAMA_PER_LAYER,
    LLAVA_FIXED,
    LLAVA_PER_LAYER,
    REDUCED_LAYERS,
    save_llama31_8b,
    save_llava15,
    save_sd15_inpaint,
    save_segformer_b2,
)
from PIL import Image

GIB = 1024**3

GIB = 1024**3


# -- sources ------------------------------------------------------------------------------------------------------
def write_tree(root: Path) -> list[Image.Image]:
    """2 training identities x 2 outfits x 1 image (+2 query, 2 test) from the rendered demo, in LTCC layout."""
    from dlcr_data import loaders

    loaded = loaders.load("demo")
    by_outfit: dict[str, list] = defaultdict(list)
    for r in loaded.splits["train"]:
        by_outfit[r.clothes_id].append(r)
    pids: dict[int, list[str]] = defaultdict(list)
    for clothes in sorted(by_outfit, key=lambda c: tuple(map(int, c.split("_")))):
        pids[by_outfit[clothes][0].pid].append(clothes)
    chosen = [pid for pid in sorted(pids) if len(pids[pid]) >= 2][:2]
    # One image per outfit, so that the first two (the --limit 2 sources) wear different outfits: a build whose
    # sources all wear one outfit has no target when the pool is cut to the sources (fixed by issue 12 item 1).
    picks = [("train", by_outfit[c][0]) for pid in chosen for c in pids[pid][:2]]
    picks += [("query", r) for r in loaded.splits["query"][:2]] + [("test", r) for r in loaded.splits["gallery"][:2]]
    images = []
    for folder, r in picks:
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(loaded.root / r.image_path, root / folder / Path(r.image_path).name)
        if folder == "train":
            with Image.open(loaded.root / r.image_path) as im:
                images.append(im.convert("RGB"))
    return images


# -- the build, in a fresh process ----------------------------------------------------------------------------------
def _proc_status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) / 1024**2  # GiB
    return out


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) so that the next reading is the peak of one interval (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cli_child(cli_args: list[str], marks_path: Path) -> None:
    """Runs `dlcr-data <cli_args>` (the real CLI), recording a mark (time, RSS, peak since the last mark) at every
    stage boundary of its progress reporter; the marks go to `marks_path` when the process exits."""
    import atexit

    from dlcr_data import progress
    from dlcr_data.cli import main

    marks: list[dict] = []
    resettable = _reset_peak()

    def mark(event: str) -> None:
        marks.append({"event": event, "t": time.perf_counter(), **_proc_status()})
        _reset_peak()

    original_stage, original_done = progress.RichReporter.stage, progress.RichReporter.done

    def stage(self, name: str, total: int):
        mark(f"{name}:start")
        return original_stage(self, name, total)

    def done(self, name: str) -> None:
        original_done(self, name)
        mark(f"{name}:done")

    progress.RichReporter.stage, progress.RichReporter.done = stage, done

    def write() -> None:
        mark("exit")
        marks_path.write_text(json.dumps({"marks": marks, "peak_resettable": resettable}))

    atexit.register(write)
    mark("start")
    sys.argv = ["dlcr-data", *cli_args]
    main()


def run_cli(cli_args: list[str], marks_path: Path, log_path: Path) -> dict:
    cmd = [sys.executable, __file__, "--cli-child", str(marks_path), "--", *cli_args]
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "100"})
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    data = json.loads(marks_path.read_text()) if marks_path.exists() else {"marks": []}
    return {"exit_code": code, "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, **data}


def intervals(marks: list[dict]) -> list[dict]:
    """Wall seconds and peak RSS (GiB) between consecutive marks, named after what runs there."""
    names = {
        ("start", "parse:start"): "startup: imports, options, listing, model checks, load SegFormer",
        ("parse:start", "parse:done"): "parse (SegFormer-B2)",
        ("parse:done", "describe:start"): "load LLaVA + Llama (bf16 files -> fp32)",
        ("describe:start", "describe:done"): "describe (captions + summaries)",
        ("describe:done", "generate:start"): "plan + load SD-1.5 inpainting (bf16 files -> fp32)",
        ("generate:start", "generate:done"): "generate (SD-1.5, 256x768)",
        ("generate:done", "exit"): "manifest, card, exit",
    }
    rows = []
    for a, b in itertools.pairwise(marks):
        label = names.get((a["event"], b["event"]), f"{a['event']} -> {b['event']}")
        rows.append({"interval": label, "seconds": b["t"] - a["t"], "peak_rss_gib": b.get("VmHWM", 0.0)})
    return rows


# -- checks (as tests/build/test_build_models.py does them) -----------------------------------------------------------
def check_outputs(out: Path, root: Path) -> dict:
    from dlcr_data.build.parse import clothing_mask, load_garment_map

    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    for shard in sorted((out / "ltcc").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples[key][ext] = tar.extractfile(member).read()
    sources = {p.stem: p for p in (root / "train").glob("*.png")}
    checks = []
    for key, members in sorted(samples.items()):
        meta = json.loads(members["json"])
        src = np.asarray(Image.open(sources[meta["source_key"].removeprefix("train_")]).convert("RGB"))
        image = np.asarray(Image.open(io.BytesIO(members["png"])).convert("RGB"))
        mask = np.asarray(Image.open(io.BytesIO(members["mask.png"]))) > 0
        garment_map = load_garment_map(out / "work" / "ltcc" / "masks", meta["source_key"])
        checks.append(
            {
                "key": key,
                "members": sorted(members),
                "size_matches": image.shape == src.shape and mask.shape == src.shape[:2],
                "mask_fraction": round(float(mask.mean()), 3),
                "mask_is_clothing_mask": bool(np.array_equal(mask, clothing_mask(garment_map))),
                "outside_mask_identical": bool(np.array_equal(image[~mask], src[~mask])),
                "inside_mask_changed": bool((image[mask] != src[mask]).any()),
                "target_text": meta["target_text"],
                "model": meta["model"],
            }
        )
    manifest = json.loads((out / "manifest.json").read_text())["builds"]["ltcc"]
    ok = bool(checks) and all(
        c["size_matches"] and c["mask_is_clothing_mask"] and c["outside_mask_identical"] for c in checks
    )
    return {"samples": checks, "totals": manifest["totals"], "complete": manifest.get("complete"), "ok": ok}


# -- driver -------------------------------------------------------------------------------------------------------
def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def choose_layers(arg: str) -> tuple[int, float]:
    """Decoder layers per language model, and the fp32 GiB both need together with that many layers."""

    def need(layers: int) -> float:
        params = LLAVA_FIXED + LLAMA_FIXED + layers * (LLAVA_PER_LAYER + LLAMA_PER_LAYER)
        return 4 * params / GIB

    if arg != "auto":
        return int(arg), need(int(arg))
    layers = FULL_LAYERS if need(FULL_LAYERS) + 2.0 < 0.9 * mem_available_gib() else REDUCED_LAYERS
    return layers, need(layers)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llm-layers", default="auto", help="decoder layers of both language models (auto, or N)")
    p.add_argument("--save-dtype", default="bfloat16", choices=("bfloat16", "float32"), help="weights on disk")
    p.add_argument("--steps", type=int, default=1, help="diffusion steps")
    p.add_argument("--workdir", type=Path, default=None, help="where models and the build go (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the models and the build folder")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/<name>.json)")
    p.add_argument("--cli-child", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("cli_args", nargs="*", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.cli_child is not None:
        cli_child(args.cli_args, args.cli_child)
        return None
    import torch

    dtype = getattr(torch, args.save_dtype)
    layers, need_gib = choose_layers(args.llm_layers)
    workdir = Path(tempfile.mkdtemp(prefix="dlcr-bench-fullsize-", dir=args.workdir))
    result: dict = {
        "config": {
            "llm_layers": layers,
            "llm_layers_full": FULL_LAYERS,
            "describe_fp32_gib_estimate": need_gib,
            "mem_available_gib_at_start": mem_available_gib(),
            "loadavg_at_start": list(os.getloadavg()),
            "save_dtype": args.save_dtype,
            "steps": args.steps,
        },
        "models": {},
    }
    try:
        root, models = workdir / "ltcc", workdir / "models"
        images = write_tree(root)
        makers = {
            "segformer-b2-clothes": lambda p: save_segformer_b2(p, images),
            "sd15-inpaint": lambda p: save_sd15_inpaint(p, dtype),
            "llava-1.5": lambda p: save_llava15(p, layers, dtype),
            "llama-3.1-8b": lambda p: save_llama31_8b(p, layers, dtype),
        }
        for name, make in makers.items():  # one at a time: each is freed before the next
            t0 = time.perf_counter()
            info = make(models / name)
            gc.collect()
            info["write_seconds"] = time.perf_counter() - t0
            info["disk_bytes"] = sum(p.stat().st_size for p in (models / name).rglob("*") if p.is_file())
            result["models"][name] = info
            print(f"{name}: written in {info['write_seconds']:.0f} s", file=sys.stderr, flush=True)
        out = workdir / "out"
        cli_args = [
            "build", "ltcc", "--root", str(root), "--out", str(out), "--limit", "2", "--variants", "1",
            "--steps", str(args.steps), "--captions-per-outfit", "1", "--batch-size", "8",
            "--parser", "segformer", "--parser-model", str(models / "segformer-b2-clothes"),
            "--describer", "vlm", "--vlm-model", str(models / "llava-1.5"),
            "--llm-model", str(models / "llama-3.1-8b"), "--generator", "diffusion",
            "--model", str(models / "sd15-inpaint"),
        ]  # fmt: skip
        result["cli"] = "dlcr-data " + " ".join(cli_args)
        result["mem_available_gib_before_build"] = mem_available_gib()
        result["loadavg_before_build"] = list(os.getloadavg())
        log_path = workdir / "build.log"
        run = run_cli(cli_args, workdir / "marks.json", log_path)
        result["loadavg_after_build"] = list(os.getloadavg())
        result["build"] = {k: v for k, v in run.items() if k != "marks"}
        result["build"]["intervals"] = intervals(run["marks"])
        result["build"]["peak_rss_gib"] = max((m.get("VmHWM", 0.0) for m in run["marks"]), default=0.0)
        result["build"]["log_tail"] = log_path.read_text(errors="replace")[-3000:]
        if run["exit_code"] == 0:
            result["checks"] = check_outputs(out, root)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    path = write_result("full_size_models", result, args.json)
    print(report(result))
    print(f"\nresult: {path}")
    return result


def report(result: dict) -> str:
    lines = [f"models (written with random weights, {result['config']['save_dtype']} on disk):"]
    for name, info in result["models"].items():
        params = sum(info["parameters"].values())
        lines.append(f"  {name:22s} {params / 1e6:8.1f} M params  {info['disk_bytes'] / GIB:6.2f} GiB  "
                     f"{info['write_seconds']:6.1f} s")  # fmt: skip
    cfg = result["config"]
    lines.append(f"language models: {cfg['llm_layers']} of {cfg['llm_layers_full']} decoder layers")
    build = result.get("build", {})
    wall, cpu, peak = build.get("seconds", 0), build.get("cpu_seconds", 0), build.get("peak_rss_gib", 0)
    lines.append(f"\nbuild: exit {build.get('exit_code')}, {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:.2f} GiB")
    for row in build.get("intervals", []):
        lines.append(f"  {row['interval']:58s} {row['seconds']:8.1f} s  peak {row['peak_rss_gib']:6.2f} GiB")
    checks = result.get("checks")
    if checks:
        lines.append(f"\nchecks: {'ok' if checks['ok'] else 'FAILED'}; totals {checks['totals']}")
        for c in checks["samples"]:
            lines.append(f"  {c['key']}: mask {c['mask_fraction']:.2f}, outside identical {c['outside_mask_identical']}"
                         f", inside changed {c['inside_mask_changed']}, target {c['target_text']!r}")  # fmt: skip
    elif build.get("exit_code"):
        lines.append("\nthe build failed; its log ends with:\n" + build.get("log_tail", ""))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
