"""Issue 10, item 7: the whole demo build with webdataset's `TarWriter` against the project's own tar writer.

Each repetition builds the default demo (`--variants 10 --splits train,query`, every stage, the card and preview
included) into a fresh folder, once with each writer, in alternating order. The only difference between the two
runs is the object `ShardWriter` writes tar members with:

* own: `dlcr_data.build.shards.TarStream` (templated headers, sha256 while writing), when the package has one;
* webdataset: `webdataset.TarWriter` over a file wrapper that hashes what passes through it (same bytes).

The decision rule of the issue: keep the own writer only if it makes the whole build >= 5 % faster.

    .venv/bin/python bench/tar_writer_build.py --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import webdataset as wds
from _common import median, table, write_result

from dlcr_data.build import BuildOptions, build, shards


class HashingFile:
    """A write-only file wrapper that counts and hashes every byte written through it."""

    def __init__(self, stream) -> None:
        self.stream, self.sha256, self.offset = stream, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.stream.write(data)
        self.sha256.update(data)
        self.offset += len(data)
        return len(data)

    def flush(self) -> None:
        self.stream.flush()


class WebDatasetTar:
    """`TarStream`'s interface over `webdataset.TarWriter` (fixed owner, mode and mtime, as shards use)."""

    def __init__(self, stream) -> None:
        self._file = HashingFile(stream)
        self._tar = wds.TarWriter(self._file, user="dlcr", group="dlcr", mode=0o444, mtime=0, encoder=False)

    @property
    def sha256(self):
        return self._file.sha256

    @property
    def offset(self) -> int:
        return self._file.offset

    def write_sample(self, sample: dict) -> None:
        self._tar.write(sample)

    def finish(self) -> None:
        self._tar.close()


def timed_build(out: Path) -> tuple[float, list[str]]:
    start = time.perf_counter()
    build(BuildOptions(dataset="demo", out=out, variants=10, splits=("train", "query")))
    seconds = time.perf_counter() - start
    return seconds, sorted(
        p.name + ":" + hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "demo").glob("*.tar")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    own = getattr(shards, "TarStream", None)
    writers = {"webdataset": WebDatasetTar, **({"own": own} if own is not None else {})}
    build(BuildOptions(dataset="demo", out=Path(tempfile.mkdtemp()) / "warm", variants=1, limit=40))  # render, import
    times: dict[str, list[float]] = {name: [] for name in writers}
    digests: dict[str, list[str]] = {}
    for rep in range(args.repeats):
        order = list(writers) if rep % 2 == 0 else list(reversed(writers))
        for name in order:
            shards.TarStream = writers[name]
            with tempfile.TemporaryDirectory() as tmp:
                seconds, digests[name] = timed_build(Path(tmp) / "out")
            times[name].append(seconds)
            print(f"rep {rep} {name}: {seconds:.2f} s", flush=True)
    if own is not None:
        shards.TarStream = own
    identical = len({tuple(d) for d in digests.values()}) == 1
    rows = [[name, f"{median(t):.2f}", " ".join(f"{x:.2f}" for x in t)] for name, t in times.items()]
    print(table(["writer", "median s", "runs"], rows))
    result = {"seconds": times, "identical_shards": identical}
    if own is not None:
        gain = 1 - median(times["own"]) / median(times["webdataset"])
        result["own_faster_by"] = gain
        print(f"own writer faster by {100 * gain:.1f} % end to end (kept only if >= 5 %); identical: {identical}")
    write_result("tar_writer_build", result)


if __name__ == "__main__":
    main()
