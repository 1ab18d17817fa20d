"""Read throughput for training: samples/s decoding a build's samples to tensors, shards against a loose PNG folder.

One demo build (`--limit` sources x `--variants`, WebDataset shards + card) is made beforehand, untimed, and from it
the two other forms the readers need: the `datasets` Arrow cache (its one-off prepare time is reported on its own)
and a loose folder `root/<key>.png`, `root/<key>.mask.png`, `root/<key>.json` (extracted from the shards). Every
reader yields, per sample, the image as a uint8 CHW tensor, the clothing mask as a uint8 tensor and the metadata
as Python objects (the same work for all of them), through `DataLoader(batch_size=None, num_workers=k)`
(`--batch-size B`: batches of B, collated by the DataLoader):

* `webdataset`: `wds.WebDataset(urls, shardshuffle=False).decode(<mask.png: "torchl8">, "torchrgb8")`;
* `datasets`: `load_dataset(OUT, "demo", split="train")` on the prepared Arrow cache,
  `.with_format("torch", columns=[image, mask], output_all_columns=True)`;
* `datasets-streaming`: `load_dataset(..., streaming=True).map(<PIL images -> tensors>)`;
* `loose` (the peer): a classic ReID loader, a map-style dataset over the sorted file list; per sample
  `Image.open(...).convert("RGB"/"L")` -> tensor, and `json.load`.
* `webdataset-raw`, `loose-raw` (`--raw`, k=0 only): the same files read as bytes, nothing decoded: the I/O alone.

Timed: one epoch, from creating the DataLoader iterator (worker start included) to the last sample; the dataset
object (file listing, `load_dataset` of the prepared cache) is made just before, untimed, as a training run does
once. Every (reader, k) is timed with a warm page cache (its files read just before) and a cold one (`sync` and
`echo 3 > /proc/sys/vm/drop_caches` right before the dataset object is made: needs root). The share of the
reader's files resident in the page cache is checked with mincore(2) and recorded (cold: just after a drop, which
is then repeated because the check loads inodes; warm: just before the dataset object is made). Within each
repetition every reader runs once per cache state, in an order reversed every other repetition; reported are
medians with min..max and the median of the same-repetition ratios reader / loose (goal: >= 3x).

    .venv/bin/python bench/read_throughput.py                   # ~3 min: 200 sources x 10 = 2,000 samples, 3 reps
    .venv/bin/python bench/read_throughput.py --batch-size 64   # batches instead of single samples
    .venv/bin/python bench/read_throughput.py --limit 0         # the whole demo: 10,640 samples (~11 min)
    .venv/bin/python bench/read_throughput.py --cache warm      # without root
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import mmap
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
import webdataset as wds
from _common import median, table, write_result
from PIL import Image
from torch.utils.data import DataLoader

from dlcr_data.build import BuildOptions, build
from dlcr_data.hub import render_card

GOAL_RATIO = 3.0
PEER = "loose"
IMAGE, MASK = "png", "mask.png"  # member extensions = column names in `datasets`
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


# -- the data, in its three forms -------------------------------------------------------------------------------
@dataclass
class Data:
    out: Path  # the build: OUT/demo/train-*.tar, README.md, manifest.json
    loose: Path  # root/<key>.png, <key>.mask.png, <key>.json
    hf_cache: Path  # cache_dir of load_dataset: the prepared Arrow files
    urls: list[str]
    samples: int
    files: dict[str, list[Path]]  # what each form reads: "shards", "arrow", "loose"


def make_data(workdir: Path, args: argparse.Namespace) -> tuple[Data, dict]:
    """Build, card, Arrow cache (its prepare timed once), loose folder; all untimed but the prepare."""
    out, info = workdir / "out", {}
    t = time.perf_counter()
    opts = BuildOptions(
        dataset="demo",
        out=out,
        variants=args.variants,
        splits=("train",),
        limit=args.limit or None,
        shard_samples=args.shard_samples,
    )
    entry = build(opts)
    render_card(out)
    info["build_s"] = time.perf_counter() - t
    shards = sorted((out / "demo").glob("train-*.tar"))
    samples = entry["totals"]["samples"]

    hf_cache = workdir / "hf-cache"
    t = time.perf_counter()
    prepared = datasets.load_dataset(str(out), "demo", split="train", cache_dir=str(hf_cache))
    info["arrow_prepare_s"] = time.perf_counter() - t
    arrow = [Path(f["filename"]) for f in prepared.cache_files]
    if len(prepared) != samples:
        raise SystemExit(f"load_dataset gave {len(prepared):,} rows, the build {samples:,} samples")
    del prepared

    loose = workdir / "loose"
    loose.mkdir()
    t = time.perf_counter()
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                (loose / member.name).write_bytes(tar.extractfile(member).read())
    info["loose_write_s"] = time.perf_counter() - t
    loose_files = sorted(loose.iterdir())
    if len(loose_files) != 3 * samples:
        raise SystemExit(f"the loose folder holds {len(loose_files):,} files, expected {3 * samples:,}")
    os.sync()

    files = {"shards": shards, "arrow": arrow, "loose": loose_files}
    info.update({f"{form}_bytes": sum(p.stat().st_size for p in paths) for form, paths in files.items()})
    info.update({"samples": samples, "shards": len(shards), "loose_files": len(loose_files)})
    with Image.open(loose_files[0].with_name(loose_files[0].name.split(".")[0] + ".png")) as im:
        info["image_size"] = list(im.size)  # W, H
    return Data(out, loose, hf_cache, [str(p) for p in shards], samples, files), info


# -- the readers ------------------------------------------------------------------------------------------------
def to_chw_uint8(image: Image.Image) -> torch.Tensor:
    """A PIL image as a contiguous uint8 CHW tensor (mode L: one channel), as datasets' torch format makes it."""
    array = np.asarray(image)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


_torchl8 = wds.imagehandler("torchl8")


def _decode_mask(data: bytes) -> torch.Tensor:
    return _torchl8(".png", data)  # webdataset's own handler; the extension only has to be an image one


def webdataset_reader(data: Data) -> torch.utils.data.IterableDataset:
    return wds.WebDataset(data.urls, shardshuffle=False).decode(
        wds.handle_extension(MASK, _decode_mask), wds.imagehandler("torchrgb8")
    )


def webdataset_raw(data: Data) -> torch.utils.data.IterableDataset:
    return wds.WebDataset(data.urls, shardshuffle=False)


def datasets_reader(data: Data) -> torch.utils.data.Dataset:
    ds = datasets.load_dataset(str(data.out), "demo", split="train", cache_dir=str(data.hf_cache))
    # Only the images become tensors: the json struct stays Python, as in the other readers.
    return ds.with_format("torch", columns=[IMAGE, MASK], output_all_columns=True)


def _images_to_tensors(example: dict) -> dict:
    return {IMAGE: to_chw_uint8(example[IMAGE]), MASK: to_chw_uint8(example[MASK])}


def streaming_reader(data: Data) -> torch.utils.data.IterableDataset:
    ds = datasets.load_dataset(str(data.out), "demo", split="train", streaming=True, cache_dir=str(data.hf_cache))
    # Not with_format("torch"): on an IterableDataset it takes no columns and would turn the metadata into tensors.
    return ds.map(_images_to_tensors)


class LooseFolder(torch.utils.data.Dataset):
    """The classic ReID loader: a sorted file list made once, then per sample PIL reads and json.load."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.keys = sorted(name[:-5] for name in os.listdir(root) if name.endswith(".json"))

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict:
        key = self.keys[i]
        base = os.path.join(self.root, key)
        with Image.open(base + ".png") as im:
            image = to_chw_uint8(im.convert("RGB"))
        with Image.open(base + ".mask.png") as im:
            mask = to_chw_uint8(im.convert("L"))
        with open(base + ".json", "rb") as f:
            meta = json.load(f)
        return {"__key__": key, IMAGE: image, MASK: mask, "json": meta}


class LooseRaw(LooseFolder):
    """The same files as bytes: the loose folder's I/O alone."""

    def __getitem__(self, i: int) -> dict:
        base = os.path.join(self.root, self.keys[i])
        sample = {"__key__": self.keys[i]}
        for ext in (IMAGE, MASK, "json"):
            with open(f"{base}.{ext}", "rb") as f:
                sample[ext] = f.read()
        return sample


@dataclass(frozen=True)
class Reader:
    label: str
    form: str  # which files it reads (Data.files)
    make: Callable[[Data], torch.utils.data.Dataset]
    peer: str = PEER  # the loose-folder reader it is compared with


READERS = {
    "webdataset": Reader("webdataset .decode(torchrgb8, mask: torchl8)", "shards", webdataset_reader),
    "datasets": Reader('datasets Arrow .with_format("torch")', "arrow", datasets_reader),
    "datasets-streaming": Reader("datasets streaming=True .map(to tensors)", "shards", streaming_reader),
    PEER: Reader("loose PNG folder: PIL + json.load (peer)", "loose", lambda data: LooseFolder(data.loose)),
    "webdataset-raw": Reader("webdataset, bytes only (no decode)", "shards", webdataset_raw, "loose-raw"),
    "loose-raw": Reader(
        "loose folder, bytes only (no decode)", "loose", lambda data: LooseRaw(data.loose), "loose-raw"
    ),
}
RAW = ("webdataset-raw", "loose-raw")


def check_readers(data: Data, names: Iterable[str], n: int = 4) -> None:
    """Untimed, also the warm-up (imports, PIL plugins): the first samples of every reader equal the loose folder's."""
    peer = LooseFolder(data.loose)
    index = {key: i for i, key in enumerate(peer.keys)}
    for name in names:
        if name in RAW:
            continue
        loader = DataLoader(READERS[name].make(data), batch_size=None, num_workers=0)
        for got, _ in zip(loader, range(n), strict=False):
            want = peer[index[got["__key__"]]]
            same = (
                torch.equal(got[IMAGE], want[IMAGE])
                and torch.equal(got[MASK].reshape(want[MASK].shape), want[MASK])
                and got["json"] == want["json"]
            )
            if not same:
                raise SystemExit(f"reader {name} differs from the loose folder on sample {got['__key__']}")


# -- page cache -------------------------------------------------------------------------------------------------
def can_drop_caches() -> bool:
    return DROP_CACHES.exists() and os.access(DROP_CACHES, os.W_OK)


def drop_caches() -> None:
    """Write back dirty pages, then drop the clean page cache, dentries and inodes (root only)."""
    os.sync()
    DROP_CACHES.write_text("3\n")


def read_all(paths: Iterable[Path]) -> None:
    """Warm the page cache with every byte of `paths`."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
_MAP_FAILED = ctypes.c_void_p(-1).value


def resident_fraction(paths: Iterable[Path]) -> float:
    """Share of the files' pages in the page cache (mincore(2) on a fresh read-only mapping; nothing is read)."""
    resident = total = 0
    for path in paths:
        size = path.stat().st_size
        if not size:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, _MAP_FAILED):
                raise OSError(ctypes.get_errno(), f"mmap {path}")
            try:
                pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
                vec = (ctypes.c_ubyte * pages)()
                if _libc.mincore(addr, size, vec):
                    raise OSError(ctypes.get_errno(), f"mincore {path}")
                resident += int((np.frombuffer(vec, np.uint8) & 1).sum())
                total += pages
            finally:
                _libc.munmap(addr, size)
        finally:
            os.close(fd)
    return resident / total if total else 1.0


# -- one epoch --------------------------------------------------------------------------------------------------
def timed_epoch(data: Data, name: str, workers: int, cache: str, batch_size: int | None) -> dict:
    reader = READERS[name]
    files = data.files[reader.form]
    if cache == "cold":
        drop_caches()
        resident = resident_fraction(files)  # proves the drop (the check itself loads inodes: dropped again)
        drop_caches()
    else:
        read_all(files)  # right before: the host may reclaim idle page cache (e.g. a DAMON pageout scheme)
        resident = resident_fraction(files)
    t = time.perf_counter()
    dataset = reader.make(data)
    setup_s = time.perf_counter() - t
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    t0 = time.perf_counter()
    samples = 0
    for item in loader:
        samples += 1 if batch_size is None else len(item["__key__"])
    seconds = time.perf_counter() - t0
    del loader, dataset
    gc.collect()  # no mapping of the Arrow file may outlive its epoch (mapped pages survive drop_caches)
    if samples != data.samples:
        raise SystemExit(f"{name} (k={workers}) yielded {samples:,} samples, the build has {data.samples:,}")
    return {
        "reader": name,
        "workers": workers,
        "cache": cache,
        "samples": samples,
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "setup_s": setup_s,
        "resident_before": resident,
    }


def combos(args: argparse.Namespace) -> list[tuple[str, int]]:
    out = [(r, k) for r in args.readers for k in args.workers]
    if args.raw:
        out += [(r, 0) for r in RAW]
    return out


# -- driver -----------------------------------------------------------------------------------------------------
def _csv(kind: type, choices: Iterable[str] | None = None) -> Callable[[str], list]:
    def parse(text: str) -> list:
        values = [kind(v) for v in text.split(",") if v]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {sorted(choices or [])}: {text}")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=200, help="source images of the demo's train split (0: all 1,064)")
    p.add_argument("--variants", type=int, default=10, help="variants per source image")
    p.add_argument("--shard-samples", type=int, default=1000, help="BuildOptions.shard_samples")
    p.add_argument("--repeats", type=int, default=3, help="repetitions (the median is reported)")
    p.add_argument("--workers", type=_csv(int), default=[0, 2], help="DataLoader num_workers values, e.g. 0,2")
    p.add_argument(
        "--batch-size", type=int, default=None, help="DataLoader batch_size (default: None, one sample at a time)"
    )
    p.add_argument(
        "--cache", type=_csv(str, ("warm", "cold")), default=None, help="warm,cold (default: both; warm without root)"
    )
    readers = [r for r in READERS if r not in RAW]
    p.add_argument("--readers", type=_csv(str, readers), default=readers, help=",".join(readers))
    p.add_argument("--raw", action=argparse.BooleanOptionalAction, default=True, help="also the bytes-only readers")
    p.add_argument("--workdir", type=Path, default=None, help="where the build and its copies go (default: $TMPDIR)")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/read_throughput.json)")
    args = p.parse_args(argv)
    if PEER not in args.readers:
        p.error(f"--readers must include the peer, {PEER}")
    if args.cache is None:
        args.cache = ["warm", "cold"] if can_drop_caches() else ["warm"]
        if "cold" not in args.cache:
            print(f"note: no write access to {DROP_CACHES} (root): warm page cache only", file=sys.stderr)
    elif "cold" in args.cache and not can_drop_caches():
        p.error(f"a cold page cache needs write access to {DROP_CACHES} (root); use --cache warm")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    datasets.disable_progress_bars()
    workdir = Path(tempfile.mkdtemp(prefix="dlcr-bench-read-", dir=args.workdir))
    try:
        data, info = make_data(workdir, args)
        print(
            f"{data.samples:,} samples in {info['shards']} shards ({info['shards_bytes'] / 1e6:.0f} MB); Arrow "
            f"prepared in {info['arrow_prepare_s']:.1f} s; loose folder of {info['loose_files']:,} files",
            file=sys.stderr,
        )
        if info["shards"] < max(args.workers):  # a worker with no shard: webdataset raises, streaming idles
            raise SystemExit(f"{info['shards']} shard(s) for {max(args.workers)} workers: lower --shard-samples")
        check_readers(data, args.readers)
        order = combos(args)
        runs = []
        info["loadavg_before"] = list(os.getloadavg())  # the machine is shared: how busy it was
        for rep in range(args.repeats):
            caches = args.cache if rep % 2 == 0 else args.cache[::-1]
            for cache in caches:
                for name, workers in order if rep % 2 == 0 else order[::-1]:
                    run = timed_epoch(data, name, workers, cache, args.batch_size)
                    runs.append({"rep": rep, **run})
                    print(
                        f"rep {rep + 1}/{args.repeats} {cache} {name:18s} k={workers} {run['seconds']:6.2f} s "
                        f"{run['samples_per_s']:8,.0f} samples/s (resident before: {run['resident_before']:.0%})",
                        file=sys.stderr,
                    )
        info["loadavg_after"] = list(os.getloadavg())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    info["wall_s"] = time.perf_counter() - started  # the whole benchmark, setup included
    result = summarise(args, info, runs)
    path = write_result("read_throughput", result, args.json)
    print(report(result))
    print(f"\nresult: {path}")
    return result


def summarise(args: argparse.Namespace, info: dict, runs: list[dict]) -> dict:
    def sps(name: str, workers: int, cache: str) -> dict[int, float]:
        return {
            r["rep"]: r["samples_per_s"]
            for r in runs
            if (r["reader"], r["workers"], r["cache"]) == (name, workers, cache)
        }

    rows = []
    for name, workers in combos(args):
        for cache in args.cache:
            mine = [r for r in runs if (r["reader"], r["workers"], r["cache"]) == (name, workers, cache)]
            values = [r["samples_per_s"] for r in mine]
            row = {
                "reader": name,
                "label": READERS[name].label,
                "workers": workers,
                "cache": cache,
                "samples_per_s": median(values),
                "min_samples_per_s": min(values),
                "max_samples_per_s": max(values),
                "ms_per_sample": 1e3 * median([r["seconds"] / r["samples"] for r in mine]),
                "setup_s": median([r["setup_s"] for r in mine]),
                "resident_before": median([r["resident_before"] for r in mine]),
            }
            peer = READERS[name].peer
            if name != peer:
                own, other = sps(name, workers, cache), sps(peer, workers, cache)
                row["peer"] = peer
                row["ratio_vs_peer"] = median([own[rep] / other[rep] for rep in own])
                if name not in RAW:
                    row["goal_met"] = row["ratio_vs_peer"] >= GOAL_RATIO
            rows.append(row)
    return {
        "config": {
            "dataset": "demo",
            "limit": args.limit or None,
            "variants": args.variants,
            "shard_samples": args.shard_samples,
            "repeats": args.repeats,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "caches": args.cache,
            "readers": args.readers,
            "raw": args.raw,
            "datasets_version": datasets.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "data": info,
        "goal_ratio": GOAL_RATIO,
        "summary": rows,
        "runs": runs,
    }


def report(result: dict) -> str:
    cfg, info, rows = result["config"], result["data"], result["summary"]
    caches = cfg["caches"]
    by_key = {(r["reader"], r["workers"], r["cache"]): r for r in rows}
    keys = list(dict.fromkeys((r["reader"], r["workers"]) for r in rows))
    headers = ["reader", "k"]
    for cache in caches:
        headers += [f"{cache} samples/s", "min..max", f"{cache} x loose"]
    table_rows = []
    for name, workers in keys:
        row: list[object] = [READERS[name].label, workers]
        for cache in caches:
            r = by_key[(name, workers, cache)]
            ratio = f"{r['ratio_vs_peer']:.2f}x" if "ratio_vs_peer" in r else ""
            row += [round(r["samples_per_s"]), f"{r['min_samples_per_s']:,.0f}..{r['max_samples_per_s']:,.0f}", ratio]
        table_rows.append(row)
    resident = {cache: [r["resident_before"] for r in rows if r["cache"] == cache] for cache in caches}
    lines = [
        f"read throughput: demo build, {info['samples']:,} samples ({info['shards']} shards, "
        f"{info['shards_bytes'] / 1e6:.0f} MB; Arrow {info['arrow_bytes'] / 1e6:.0f} MB; loose "
        f"{info['loose_files']:,} files), DataLoader(batch_size={cfg['batch_size']}, num_workers=k), "
        f"median of {cfg['repeats']}",
        f"one-off: build {info['build_s']:.1f} s, Arrow prepare (load_dataset) {info['arrow_prepare_s']:.1f} s, "
        f"loose folder written in {info['loose_write_s']:.1f} s (untimed); load average "
        f"{info['loadavg_before'][0]:.1f} before, {info['loadavg_after'][0]:.1f} after",
        "",
        table(headers, table_rows),
        "",
        "page cache, share of the reader's files resident (median per reader, min..max over readers): "
        + ", ".join(f"{c} {min(v):.0%}..{max(v):.0%}" for c, v in resident.items()),
    ]
    if set(caches) == {"warm", "cold"}:
        # Where the time goes: what a cold cache adds per sample is the I/O the reader waits for.
        ms_rows = []
        for name, k in keys:
            if k == 0:
                warm, cold = (by_key[(name, k, c)]["ms_per_sample"] for c in ("warm", "cold"))
                ms_rows.append([READERS[name].label, warm, cold, cold - warm])
        lines += ["", "k=0, ms per sample (median):", table(["reader", "warm", "cold", "cold - warm"], ms_rows)]
    lines += ["", f"goal: shards >= {GOAL_RATIO:.0f}x the loose folder (same k, same cache state):"]
    for r in rows:
        if "goal_met" in r:
            lines.append(
                f"  {r['cache']:4s} k={r['workers']} {r['reader']:18s} {r['ratio_vs_peer']:5.2f}x  "
                f"{'met' if r['goal_met'] else 'NOT met'}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
