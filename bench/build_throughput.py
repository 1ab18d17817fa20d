"""Build throughput on the embedded demo: end-to-end images/s, and CPU overhead per generated image without a model.

Three measurements, interleaved in every repetition so that machine noise hits them alike:

* `recolor`: the whole `dlcr_data.build.build()` call with the demo's default backends (oracle masks, oracle
  describer, recolor generator), into a fresh out folder. images/s = generated variants / wall seconds.
* `null`: the same build with a generator that returns its inputs unchanged (registered temporarily in
  `dlcr_data.build.generate.GENERATORS`). Its ms per image is the pipeline's own CPU cost: loading sources and masks,
  building requests, PNG encoding, tar writing, sha256, manifest. Goal: <= 10 ms per generated image.
* `recolor, isolated`: `RecolorGenerator.generate` alone on the same requests (built beforehand, untimed).

With `--breakdown` (default) the builds are instrumented with perf_counter wrappers (a few calls per image, well
under 1 us each) to split the time per stage and inside the generate stage.

    .venv/bin/python bench/build_throughput.py                    # ~45 s: 320 sources x 10 variants, 3 reps
    .venv/bin/python bench/build_throughput.py --limit 0 --repeats 3   # the whole demo (1,064 x 10)
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import flush_writes, median, table, write_result
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build import BuildOptions, build, shards
from dlcr_data.build.backends import Backend
from dlcr_data.build.generate import GENERATORS, GenerationRequest, Generator
from dlcr_data.build.generate import stage as generate_stage
from dlcr_data.build.parse import clothing_mask, load_garment_map
from dlcr_data.build.plan import read_plan
from dlcr_data.progress import Reporter

NULL = "bench-null"  # registry name of the null generator while a build runs
GOAL_MS = 10.0


class NullGenerator(Backend):
    """Returns every source image unchanged: a build with it costs everything but the model."""

    name = NULL
    model_id: str | None = None
    needs_donor = False

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]:
        return [r.image for r in batch]


# -- instrumentation --------------------------------------------------------------------------------------------
class Probe:
    """Accumulated seconds per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, fn: Callable, label: str | Callable[..., str]) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                name = label(*args, **kwargs) if callable(label) else label
                self.seconds[name] += time.perf_counter() - t

        return timed


class TimingReporter(Reporter):
    """Records when each stage starts and ends (build() calls these hooks on the main process)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def stage(self, name: str, total: int) -> Callable[[int], None]:
        self.marks.append((f"{name}:start", time.perf_counter()))
        return lambda n: None

    def done(self, name: str) -> None:
        self.marks.append((f"{name}:done", time.perf_counter()))


@contextmanager
def _patched(obj: Any, attr: str, value: Any) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


@contextmanager
def instrumented(probe: Probe | None) -> Iterator[None]:
    """Registers the null generator; with a probe, also times the per-image steps of the generate stage."""
    registered = dict(GENERATORS)
    GENERATORS[NULL] = NullGenerator
    try:
        if probe is None:
            yield
            return
        png_label = lambda image, fmt: "encode mask PNG" if image.mode == "L" else f"encode image {fmt.upper()}"  # noqa: E731
        timed = [(cls, "generate", "generator.generate") for cls in set(GENERATORS.values())]  # output unchanged
        timed += [
            (generate_stage, "_load_source", "load source + mask"),
            (generate_stage, "encode_image", png_label),
            (generate_stage, "encode_sample", "encode sample (json)"),
            (shards.ShardWriter, "write", "tar write"),
            (shards.ShardWriter, "close", "shard close"),
            (shards, "sha256_file", "sha256"),
        ]
        with contextlib.ExitStack() as stack:
            for obj, attr, label in timed:
                stack.enter_context(_patched(obj, attr, probe.wrap(getattr(obj, attr), label)))
            yield
    finally:
        GENERATORS.clear()
        GENERATORS.update(registered)


# -- one build --------------------------------------------------------------------------------------------------
def run_build(out: Path, generator: str, args: argparse.Namespace, breakdown: bool) -> dict:
    """One timed `build()` into the fresh folder `out`; the seconds, sample count and (optionally) breakdown."""
    opts = BuildOptions(
        dataset="demo",
        out=out,
        variants=args.variants,
        limit=args.limit or None,
        generator=generator,
        batch_size=args.batch_size,
        shard_samples=args.shard_samples,
    )
    probe = Probe() if breakdown else None
    reporter = TimingReporter()
    with instrumented(probe):
        t0 = time.perf_counter()
        entry = build(opts, reporter)
        seconds = time.perf_counter() - t0
    samples = entry["totals"]["samples"]
    if not samples:  # e.g. a --limit so small that the pool holds one outfit: no other outfit to change into
        raise SystemExit(f"the build made no variants (--limit {args.limit}); use a larger --limit")
    run = {"seconds": seconds, "samples": samples, "bytes": entry["totals"]["bytes"]}
    run["images_per_s"] = samples / seconds
    run["ms_per_image"] = 1e3 * seconds / samples
    if probe is not None:
        run["breakdown_s"] = _breakdown(t0, t0 + seconds, reporter.marks, probe.seconds)
    return run


def _breakdown(t0: float, t1: float, marks: list[tuple[str, float]], probed: dict[str, float]) -> dict[str, float]:
    """Non-overlapping seconds: stages from the reporter marks, the generate stage split by the probe."""
    at = dict(marks)
    gen_start, gen_done = at["generate:start"], at["generate:done"]
    sha = probed.pop("sha256", 0.0)
    probed["shard close"] = probed.get("shard close", 0.0) - sha  # tar end blocks, flush, rename
    inner = {**probed, "sha256": sha}
    parts = {
        "setup (options, dataset listing, out folder)": at["parse:start"] - t0,
        "parse (oracle masks)": at["parse:done"] - at["parse:start"],
        "describe (oracle outfits)": at["describe:done"] - at["parse:done"],
        "plan, shard assignment, generator setup": gen_start - at["describe:done"],
        **{f"generate: {k}": v for k, v in sorted(inner.items())},
        "generate: other (requests, metadata, loop)": (gen_done - gen_start) - sum(inner.values()),
        "manifest + finish": t1 - gen_done,
    }
    return parts


# -- the generator alone ----------------------------------------------------------------------------------------
def isolated_requests(out: Path, limit: int | None) -> list[GenerationRequest]:
    """The requests a build made (from its plan and cached masks), rebuilt untimed for the isolated timing."""
    work = out / "work" / "demo"
    loaded = loaders.load("demo")
    records = {r.key: r for split in loaded.splits.values() for r in split}
    sources: dict[str, tuple[Image.Image, Any, Any]] = {}
    requests = []
    for v in read_plan(work / "plan.jsonl")[:limit]:
        if v.source_key not in sources:
            with Image.open(loaded.root / records[v.source_key].image_path) as im:
                image = im.convert("RGB")
            garment_map = load_garment_map(work / "masks", v.source_key)
            sources[v.source_key] = (image, garment_map, clothing_mask(garment_map))
        image, garment_map, mask = sources[v.source_key]
        requests.append(
            GenerationRequest(v.key, image, garment_map, mask, v.prompt, v.negative_prompt, v.target_text, v.seed)
        )
    return requests


def time_generator(generator: Generator, requests: list[GenerationRequest], batch_size: int) -> dict:
    t0 = time.perf_counter()
    for i in range(0, len(requests), batch_size):
        generator.generate(requests[i : i + batch_size])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "samples": len(requests), "ms_per_image": 1e3 * seconds / len(requests)}


# -- driver -----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=320, help="source images of the demo's train split (0: all 1,064)")
    p.add_argument("--variants", type=int, default=10, help="variants per source image")
    p.add_argument("--repeats", type=int, default=3, help="repetitions (the median is reported)")
    p.add_argument("--batch-size", type=int, default=8, help="BuildOptions.batch_size")
    p.add_argument("--shard-samples", type=int, default=1000, help="BuildOptions.shard_samples")
    p.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True, help="time the steps")
    p.add_argument("--workdir", type=Path, default=None, help="where the fresh out folders go (default: $TMPDIR)")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/build_throughput.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    loaders.load("demo")  # renders the demo on first use: never inside a timed build
    workdir = Path(tempfile.mkdtemp(prefix="dlcr-bench-build-", dir=args.workdir))
    try:
        # Warm-up (untimed): imports torch/accelerate, opens PIL plugins, fills the page cache with the demo.
        warm = argparse.Namespace(**{**vars(args), "limit": 32, "variants": 2})
        for gen in ("recolor", NULL):
            run_build(workdir / f"warmup-{gen}", gen, warm, breakdown=True)
        runs: dict[str, list[dict]] = {"recolor": [], "null": [], "recolor_isolated": []}
        for rep in range(args.repeats):
            # Alternate the order so that a slow phase of the machine does not always hit the same mode.
            order = [("recolor", "recolor"), ("null", NULL)]
            for mode, gen in order if rep % 2 == 0 else order[::-1]:
                out = workdir / f"{mode}-{rep}"
                flush_writes()
                runs[mode].append(run_build(out, gen, args, args.breakdown))
                print(f"rep {rep + 1}/{args.repeats} {mode:8s} {runs[mode][-1]['seconds']:7.2f} s", file=sys.stderr)
            requests = isolated_requests(workdir / f"recolor-{rep}", None)
            runs["recolor_isolated"].append(time_generator(GENERATORS["recolor"](), requests, args.batch_size))
            for mode in ("recolor", "null"):
                shutil.rmtree(workdir / f"{mode}-{rep}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result = summarise(args, runs)
    path = write_result("build_throughput", result, args.json)
    print(report(result))
    print(f"\nresult: {path}")
    return result


def summarise(args: argparse.Namespace, runs: dict[str, list[dict]]) -> dict:
    rec, null, iso = runs["recolor"], runs["null"], runs["recolor_isolated"]
    med = {
        "recolor_images_per_s": median([r["images_per_s"] for r in rec]),
        "recolor_ms_per_image": median([r["ms_per_image"] for r in rec]),
        "null_images_per_s": median([r["images_per_s"] for r in null]),
        "null_ms_per_image": median([r["ms_per_image"] for r in null]),
        "recolor_isolated_ms_per_image": median([r["ms_per_image"] for r in iso]),
        # Same-repetition ratio: how much of a real (recolor) build is pipeline overhead.
        "null_over_recolor_time": median([n["seconds"] / r["seconds"] for n, r in zip(null, rec, strict=True)]),
    }
    med["overhead_goal_ms"] = GOAL_MS
    med["overhead_goal_met"] = med["null_ms_per_image"] <= GOAL_MS
    breakdown = {}
    if args.breakdown:
        for mode in ("recolor", "null"):
            keys = runs[mode][0]["breakdown_s"].keys()
            breakdown[mode] = {
                k: 1e3 * median([r["breakdown_s"][k] / r["samples"] for r in runs[mode]]) for k in keys
            }  # ms per generated image
    return {
        "config": {
            "dataset": "demo",
            "limit": args.limit or None,
            "variants": args.variants,
            "images_per_build": rec[0]["samples"],
            "batch_size": args.batch_size,
            "shard_samples": args.shard_samples,
            "repeats": args.repeats,
            "breakdown_instrumented": args.breakdown,
        },
        "summary": med,
        "breakdown_ms_per_image": breakdown,
        "runs": runs,
    }


def report(result: dict) -> str:
    cfg, s, runs = result["config"], result["summary"], result["runs"]
    sources = "all" if cfg["limit"] is None else cfg["limit"]
    rows = [
        [label, median([r["seconds"] for r in runs[mode]]), ips, ms, _span(runs[mode])]
        for label, mode, ips, ms in (
            ("recolor (end to end)", "recolor", s["recolor_images_per_s"], s["recolor_ms_per_image"]),
            ("null generator (overhead)", "null", s["null_images_per_s"], s["null_ms_per_image"]),
            ("recolor generate() alone", "recolor_isolated", None, s["recolor_isolated_ms_per_image"]),
        )
    ]
    lines = [
        f"build throughput: demo, {sources} sources x {cfg['variants']} variants = {cfg['images_per_build']:,} "
        f"images per build, batch {cfg['batch_size']}, median of {cfg['repeats']}",
        "",
        table(["mode", "s/build", "images/s", "ms/image", "min..max ms/image"], rows),
        "",
        f"null / recolor build time (same repetition): {s['null_over_recolor_time']:.2f}",
        f"overhead per generated image: {s['null_ms_per_image']:.2f} ms (goal <= {s['overhead_goal_ms']:.0f} ms: "
        f"{'met' if s['overhead_goal_met'] else 'NOT met'})",
    ]
    bd = result["breakdown_ms_per_image"]
    if bd:
        keys = list(bd["null"])
        rows = [[k, bd["null"][k], bd["recolor"][k]] for k in keys]
        rows.append(["total", sum(bd["null"].values()), sum(bd["recolor"].values())])
        lines += ["", "breakdown, ms per generated image (median):", table(["part", "null", "recolor"], rows)]
    return "\n".join(lines)


def _span(runs: list[dict]) -> str:
    values = [r["ms_per_image"] for r in runs]
    return f"{min(values):.2f}..{max(values):.2f}"


if __name__ == "__main__":
    main()
