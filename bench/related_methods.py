"""Related methods on the embedded demo: donor generators, body-shape scoring, identity gate and outfit clustering.

N requests (`--n`, default 320) are built once, untimed, as a build with a donor-based generator builds them: source
images of the demo's train split (evenly spaced over it; each image gets `ceil(N / train images)` variants when N
exceeds the split), garment maps from the demo's shipped parsing masks (`OracleParser`), clothing masks
(`clothing_mask`, no dilation), targets from `plan_variants` with the build's defaults (`random` sampler, seed 0) and,
per request, its appearance donor: a training image wearing the target outfit, drawn by the plan from (seed, key,
variant). Then, interleaved in every repetition (order reversed every other one, a `gc.collect()` before each, all
in batches of `--batch-size` as a build calls them), the median over `--repeats` of:

* generators on the same N requests, ms per image: `recolor` (the peer: the DLCR demo generator, which ignores
  the donor), `clone` and `swap` (which read it); each as a ratio to recolor in the same repetition;
* `GeometricShapeScorer.score` on the requests' source images and garment maps, ms per image;
* `IdentityGate.check` on recolor's outputs (computed beforehand) with a scratch `resnet-small` re-ID checkpoint at
  128x64 (random weights, saved with `save_checkpoint`; `fit` on the requests' distinct sources, untimed), ms per
  image, as a ratio to the peer `extract_images` of the same images with the same model and batches: the gate's
  cost beyond feature extraction (prototype similarities, the outside-mask pixel test, decisions);
* `outfit_clusters_from_records` on the whole demo train pool, images and maps read from disk as a build reads
  them (seconds), with the clusters and noise outfits of its `.summary()`.

An untimed warm-up runs every measured thing once on a few requests (imports, colour caches, torch's first calls)
and the clustering once on its whole pool (page cache). torch runs with its default thread count unless `--threads`
(recorded either way).

    .venv/bin/python bench/related_methods.py                         # 320 requests, 3 reps (well under a minute)
    .venv/bin/python bench/related_methods.py --n 1064 --repeats 5    # every train image once
    .venv/bin/python bench/related_methods.py --threads 1             # torch on one core (a shared machine)
    .venv/bin/python bench/related_methods.py --quick                 # 16 requests, 1 rep, 120-image pool: a check
"""

from __future__ import annotations

import argparse
import gc
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from _common import median, table, write_result
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.annotate.gate import IdentityGate
from dlcr_data.build.annotate.shape_geometry import GeometricShapeScorer
from dlcr_data.build.generate import GENERATORS, GenerationRequest, Generator
from dlcr_data.build.outfit_clusters import outfit_clusters_from_records
from dlcr_data.build.parse import OracleParser, clothing_mask
from dlcr_data.build.plan import plan_variants
from dlcr_data.loaders.demo import Demo
from dlcr_data.records import Record
from dlcr_data.reid.checkpoints import save_checkpoint
from dlcr_data.reid.features import extract_images
from dlcr_data.reid.model import DEMO_IMAGE_SIZE, ReIDConfig, ReIDModel

GENERATOR_NAMES = ("recolor", "clone", "swap")  # recolor first: the peer
PER_IMAGE = (*GENERATOR_NAMES, "body_shape", "gate", "extract")
QUICK = {"n": 16, "repeats": 1, "pool": 120}
WARMUP_REQUESTS = 8

Step = Callable[[int, int], list]  # (start, stop) -> one output per item of that slice


# -- setup (untimed) --------------------------------------------------------------------------------------------
def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def spread(records: Sequence[Record], k: int) -> list[Record]:
    """k records evenly spaced over `records` (all identities and outfits, not the first few)."""
    return [records[i * len(records) // k] for i in range(k)]


class GarmentMaps:
    """Canonical garment maps from the demo's shipped masks: one PNG read and `OracleParser`'s label table, as much
    work as the build's read of its cached map (`load_garment_map`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lut = OracleParser("demo").lut

    def __call__(self, record: Record) -> np.ndarray:
        with Image.open(Demo().mask_path(self.root, record)) as im:
            return self.lut[np.asarray(im)]


def make_requests(loaded: loaders.Loaded, train: list[Record], n: int) -> tuple[list[GenerationRequest], list[Record]]:
    """N requests with donors, built as `build._batches` builds them from a plan made with donors; and the source
    record of each."""
    root = loaded.root
    texts = Demo().outfit_texts(root)
    outfits = {r.clothes_id: texts[r.clothes_id] for r in train}
    donors: dict[str, list[Record]] = {}
    for r in train:
        donors.setdefault(r.clothes_id, []).append(r)
    count = min(n, len(train))
    plan = plan_variants(spread(train, count), outfits, math.ceil(n / count), seed=0, donors=donors)[:n]
    records = {r.key: r for r in train}
    maps = GarmentMaps(root)
    loaded_images: dict[str, tuple[Image.Image, np.ndarray]] = {}

    def load(key: str) -> tuple[Image.Image, np.ndarray]:
        if key not in loaded_images:
            image = open_rgb(root / records[key].image_path)
            loaded_images[key] = (image, maps(records[key]))
        return loaded_images[key]

    requests = []
    for v in plan:
        image, garment_map = load(v.source_key)
        donor_image, donor_map = load(v.appearance_key)
        requests.append(
            GenerationRequest(
                key=v.key,
                image=image,
                garment_map=garment_map,
                mask=clothing_mask(garment_map),
                prompt=v.prompt,
                negative_prompt=v.negative_prompt,
                target_text=v.target_text,
                seed=v.seed,
                donor_image=donor_image,
                donor_garment_map=donor_map,
            )
        )
    return requests, [records[v.source_key] for v in plan]


def scratch_checkpoint(folder: Path, num_classes: int) -> Path:
    """A from-scratch `resnet-small` re-ID checkpoint at the demo's 128x64 (random weights: timing only)."""
    torch.manual_seed(0)
    config = ReIDConfig(scratch="resnet-small", image_size=DEMO_IMAGE_SIZE, num_classes=num_classes)
    return save_checkpoint(folder, ReIDModel(config), config, epoch=0)


# -- timing -----------------------------------------------------------------------------------------------------
def run_batches(step: Step, n: int, batch_size: int) -> tuple[float, list]:
    """Seconds to run `step` over [0, n) in batches, and the outputs."""
    out: list = []
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        out.extend(step(i, min(i + batch_size, n)))
    return time.perf_counter() - t0, out


def count_unchanged(outputs: list[Image.Image], requests: list[GenerationRequest]) -> int:
    """Outputs identical to their source (the donor shows none of the masked garments): a build skips them."""
    return sum(np.array_equal(np.asarray(o), np.asarray(r.image)) for o, r in zip(outputs, requests, strict=True))


def generator_step(generator: Generator, requests: list[GenerationRequest]) -> Step:
    return lambda a, b: generator.generate(requests[a:b])


def body_shape_step(requests: list[GenerationRequest]) -> Step:
    scorer = GeometricShapeScorer()
    return lambda a, b: list(scorer.score([r.image for r in requests[a:b]], [r.garment_map for r in requests[a:b]]))


def gate_step(
    gate: IdentityGate, generated: list[Image.Image], requests: list[GenerationRequest], pids: list[int]
) -> Step:
    return lambda a, b: gate.check(
        generated[a:b], [r.image for r in requests[a:b]], [r.mask for r in requests[a:b]], pids[a:b]
    )


def extract_step(model: ReIDModel, generated: list[Image.Image], batch_size: int) -> Step:
    return lambda a, b: list(extract_images(model, generated[a:b], batch_size=batch_size))


def time_clusters(pool: list[Record], root: Path) -> dict:
    """`outfit_clusters_from_records` over `pool`, images and garment maps read from disk as the build reads them."""

    def load_image(record: Record) -> np.ndarray:
        return np.asarray(open_rgb(root / record.image_path))

    gc.collect()
    t0 = time.perf_counter()
    clusters, embeddings = outfit_clusters_from_records(pool, load_image, GarmentMaps(root), sources=pool)
    seconds = time.perf_counter() - t0
    s = clusters.summary()
    return {
        "seconds": seconds,
        "records": len(pool),
        "embedded_records": len(embeddings),
        **{k: s[k] for k in ("outfits", "clusters", "noise", "eps", "min_samples")},
        "sizes": s["sizes"],
    }


# -- driver -----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="requests (default 320; --quick 16)")
    p.add_argument("--repeats", type=int, default=None, help="repetitions, the median is reported (default 3)")
    p.add_argument("--batch-size", type=int, default=8, help="items per generate/score/check call (build's default)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (16 requests, 1 rep, a 120-image pool)")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/related_methods.json)")
    args = p.parse_args(argv)
    args.pool = QUICK["pool"] if args.quick else 0
    args.n = args.n or (QUICK["n"] if args.quick else 320)
    args.repeats = args.repeats or (QUICK["repeats"] if args.quick else 3)
    if args.n < 1 or args.repeats < 1 or args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        p.error("--n, --repeats, --batch-size and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = loaders.load("demo")  # renders the demo on first use (default data root), never while timing
    train = sorted(loaded.splits["train"], key=lambda r: r.key)
    pool = spread(train, min(args.pool, len(train))) if args.pool else train
    requests, sources = make_requests(loaded, train, args.n)
    n, bs = len(requests), args.batch_size
    pids = [r.pid for r in sources]
    distinct = sorted({r.key: r for r in sources}.values(), key=lambda r: r.key)

    generators = {name: GENERATORS[name]() for name in GENERATOR_NAMES}
    _, generated = run_batches(generator_step(generators["recolor"], requests), n, bs)  # what the gate checks
    workdir = Path(tempfile.mkdtemp(prefix="dlcr-bench-seed-"))
    try:
        folder = scratch_checkpoint(workdir / "reid", len({r.pid for r in train}))
        gate = IdentityGate(str(folder), device="cpu", batch_size=64)
        gate.fit([open_rgb(loaded.root / r.image_path) for r in distinct], [r.pid for r in distinct])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    model = gate.embedder.model  # the very model the gate embeds with: the peer differs in nothing else

    steps: dict[str, Step] = {name: generator_step(g, requests) for name, g in generators.items()}
    steps["body_shape"] = body_shape_step(requests)
    steps["gate"] = gate_step(gate, generated, requests, pids)
    steps["extract"] = extract_step(model, generated, gate.embedder.batch_size)

    # Warm-up (untimed): every step on a few requests, the clustering on its whole pool.
    for step in steps.values():
        run_batches(step, min(WARMUP_REQUESTS, n), bs)
    time_clusters(pool, loaded.root)

    runs: dict[str, list[dict]] = {name: [] for name in (*PER_IMAGE, "clusters")}
    unchanged: dict[str, int] = {}
    order = [*PER_IMAGE, "clusters"]
    for rep in range(args.repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            if name == "clusters":
                runs[name].append(time_clusters(pool, loaded.root))
                print(f"rep {rep + 1}/{args.repeats} {name:10s} {runs[name][-1]['seconds']:8.3f} s", file=sys.stderr)
                continue
            seconds, out = run_batches(steps[name], n, bs)
            runs[name].append({"seconds": seconds, "images": n, "ms_per_image": 1e3 * seconds / n})
            if name in GENERATOR_NAMES and name not in unchanged:  # untimed: what a build would skip
                unchanged[name] = count_unchanged(out, requests)
            ms = runs[name][-1]["ms_per_image"]
            print(f"rep {rep + 1}/{args.repeats} {name:10s} {ms:8.3f} ms/image", file=sys.stderr)

    result = summarise(args, runs, unchanged, n, len(distinct), pool)
    # A quick run's figures mean little: written only when asked (--json).
    path = write_result("related_methods", result, args.json) if not args.quick or args.json else None
    print(report(result))
    if path is not None:
        print(f"\nresult: {path}")
    return result


def same_rep_ratio(runs: dict[str, list[dict]], name: str, peer: str) -> float:
    return median([a["seconds"] / b["seconds"] for a, b in zip(runs[name], runs[peer], strict=True)])


def summarise(
    args: argparse.Namespace, runs: dict[str, list[dict]], unchanged: dict[str, int], n: int, sources: int, pool: list
) -> dict:
    ms = {name: median([r["ms_per_image"] for r in runs[name]]) for name in PER_IMAGE}
    summary = {
        "ms_per_image": ms,
        "ratio_to_recolor": {name: same_rep_ratio(runs, name, "recolor") for name in GENERATOR_NAMES},
        "gate_over_extract": same_rep_ratio(runs, "gate", "extract"),
        "gate_minus_extract_ms_per_image": ms["gate"] - ms["extract"],
        "clusters_seconds": median([r["seconds"] for r in runs["clusters"]]),
        "clusters": {k: v for k, v in runs["clusters"][0].items() if k != "seconds"},
        "unchanged_outputs": unchanged,
    }
    return {
        "config": {
            "dataset": "demo",
            "requests": n,
            "distinct_sources": sources,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "quick": args.quick,
            "cluster_pool_records": len(pool),
            "gate_model": f"scratch resnet-small {DEMO_IMAGE_SIZE[0]}x{DEMO_IMAGE_SIZE[1]}, random weights, cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "summary": summary,
        "runs": runs,
    }


def report(result: dict) -> str:
    cfg, s, runs = result["config"], result["summary"], result["runs"]
    ms, ratio = s["ms_per_image"], s["ratio_to_recolor"]
    labels = {
        "recolor": ("recolor generate() (peer)", ratio["recolor"]),
        "clone": ("clone generate()", ratio["clone"]),
        "swap": ("swap generate()", ratio["swap"]),
        "body_shape": ("GeometricShapeScorer.score", None),
        "gate": ("IdentityGate.check", s["gate_over_extract"]),
        "extract": ("extract_images (gate peer)", 1.0),
    }
    rows = [[labels[k][0], ms[k], _span(runs[k], "ms_per_image"), labels[k][1]] for k in PER_IMAGE]
    c = s["clusters"]
    unchanged = ", ".join(f"{k} {v}" for k, v in s["unchanged_outputs"].items())
    return "\n".join(
        [
            f"related methods: demo, {cfg['requests']:,} requests ({cfg['distinct_sources']:,} sources, each with a "
            f"donor), batch {cfg['batch_size']}, median of {cfg['repeats']}, torch threads {cfg['torch_threads']}",
            "",
            table(["method", "ms/image", "min..max", "x peer"], rows),
            "",
            "x peer: same-repetition time ratio; generators to recolor, the gate to extract_images of the same "
            f"images (gate - extract: {s['gate_minus_extract_ms_per_image']:.2f} ms/image)",
            f"outputs identical to their source (a build skips them): {unchanged}",
            f"outfit clusters: {c['records']:,} train images ({c['embedded_records']:,} embedded), {c['outfits']} "
            f"outfits -> {c['clusters']} clusters + {c['noise']} noise (eps {c['eps']}, min_samples "
            f"{c['min_samples']}): {s['clusters_seconds']:.3f} s ({_span(runs['clusters'], 'seconds', 3)} s)",
        ]
    )


def _span(runs: list[dict], key: str, digits: int = 2) -> str:
    values = [r[key] for r in runs]
    return f"{min(values):.{digits}f}..{max(values):.{digits}f}"


if __name__ == "__main__":
    main()
