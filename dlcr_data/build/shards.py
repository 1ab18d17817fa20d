"""WebDataset shards: deterministic work units, atomic tar writing, verification.

A shard is the unit of work and of distribution: its content is fixed by the plan before anything is generated,
so any process can write any shard and the bytes are the same. Tars are written under a temp name and renamed
when complete, with fixed member metadata (mtime 0, fixed owner), so equal samples give byte-identical tars.
They read with `webdataset.WebDataset` and `datasets`' webdataset builder. `run_shards` is the loop both the build's
generate stage and `import-release` run: complete shards are kept, the others split across processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from dlcr_data.build.options import IMAGE_FORMATS
from dlcr_data.build.plan import PlanFile, PlannedVariant, Span
from dlcr_data.files import sha256_file, temp_name, write_json_atomic
from dlcr_data.manifest import read_json
from dlcr_data.records import SAMPLE_SCHEMA, Skipped

if TYPE_CHECKING:
    from dlcr_data.build.context import OutFolder
    from dlcr_data.progress import Reporter

SAMPLE_FIELDS: tuple[str, ...] = tuple(SAMPLE_SCHEMA)
ReadRows = Callable[[tuple[Span, ...]], tuple[PlannedVariant, ...]]  # a plan's rows at some spans


@dataclass(frozen=True)
class ShardSpec:
    """What one shard will hold, decided by the plan alone: `size` variants at `spans` of the plan (byte ranges of
    plan.jsonl, or positions in a plan list), read on demand: a build holds one shard's rows at a time."""

    split: str
    index: int
    size: int
    spans: tuple[Span, ...]
    read: ReadRows = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}.tar"

    @property
    def variants(self) -> tuple[PlannedVariant, ...]:
        rows = self.read(self.spans)
        if len(rows) != self.size:  # plan.jsonl changed under the build
            raise RuntimeError(f"shard {self.name}: {len(rows)} planned variants read, {self.size} expected")
        return rows


@dataclass
class ShardResult:
    """A complete shard as recorded in the manifest (path relative to the build's out folder)."""

    path: str
    split: str
    samples: int
    bytes: int
    sha256: str
    skipped: list[Skipped] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # variants the identity gate left out, with their scores

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ShardResult:
        return cls(**{**d, "skipped": [Skipped(**s) for s in d.get("skipped", [])]})


def assign_shards(plan: PlanFile | Iterable[PlannedVariant], shard_samples: int) -> list[ShardSpec]:
    """Cut each split's plan, in plan order, into shards of at most `shard_samples` variants.

    All variants of one source image stay in one shard, so a source skipped at generation time (empty mask,
    unreadable image) never changes another shard's content. A `PlanFile` is cut from where its sources' rows
    are (its rows stay on disk); a list of variants is cut the same way and its shards read from the list.
    """
    if isinstance(plan, PlanFile):
        return _cut(((s.split, s.source_key, s.start, s.end, s.rows) for s in plan.sources), shard_samples, plan.read)
    rows = list(plan)

    def read(spans: tuple[Span, ...]) -> tuple[PlannedVariant, ...]:
        return tuple(v for start, end in spans for v in rows[start:end])

    return _cut(((v.split, v.source_key, i, i + 1, 1) for i, v in enumerate(rows)), shard_samples, read)


def _cut(groups: Iterable[tuple[str, str, int, int, int]], shard_samples: int, read: ReadRows) -> list[ShardSpec]:
    """Shards from (split, source key, start, end, rows) items in plan order; consecutive items of one source
    (within its split) form a group, and a group that would overflow the current shard starts the next one."""
    cutters: dict[str, _SplitCutter] = {}  # splits in first-seen order, as the shards are listed
    for split, key, start, end, n in groups:
        if split not in cutters:
            cutters[split] = _SplitCutter(split, shard_samples, read)
        cutters[split].add(key, start, end, n)
    return [spec for cutter in cutters.values() for spec in cutter.finish()]


class _SplitCutter:
    """One split's shards, cut while the plan streams by: the open shard and the source group being read."""

    def __init__(self, split: str, limit: int, read: ReadRows) -> None:
        self.split, self.limit, self.read = split, limit, read
        self.specs: list[ShardSpec] = []
        self.spans: list[Span] = []
        self.size = 0
        self.key: str | None = None
        self.group: list[Span] = []
        self.group_size = 0

    def add(self, key: str, start: int, end: int, n: int) -> None:
        if key != self.key:
            self._close_group()
            self.key = key
        _extend(self.group, start, end)
        self.group_size += n

    def _close_group(self) -> None:
        if self.size and self.size + self.group_size > self.limit:
            self._emit()
        for start, end in self.group:
            _extend(self.spans, start, end)
        self.size += self.group_size
        self.group, self.group_size = [], 0

    def _emit(self) -> None:
        self.specs.append(ShardSpec(self.split, len(self.specs), self.size, tuple(self.spans), self.read))
        self.spans, self.size = [], 0

    def finish(self) -> list[ShardSpec]:
        self._close_group()
        if self.size:
            self._emit()
        return self.specs


def _extend(spans: list[Span], start: int, end: int) -> None:
    """Appends [start, end), merged into the last span when they touch: a shard is usually one range."""
    if spans and spans[-1][1] == start:
        spans[-1] = (spans[-1][0], end)
    else:
        spans.append((start, end))


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """PNG (lossless) or JPEG (quality 95); fixed options so equal pixels give equal bytes."""
    buf = io.BytesIO()
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, not {fmt!r}")
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=6)
    else:
        image.convert("RGB").save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def encode_sample(key: str, image: bytes, mask: bytes | None, meta: dict, fmt: str) -> dict:
    """One WebDataset sample: `<key>.<fmt>`, `<key>.mask.png`, `<key>.json` (same fields in every sample); no mask
    member when `mask` is None (an imported release ships no masks, and none is made up)."""
    missing = set(SAMPLE_FIELDS) - set(meta)
    extra = set(meta) - set(SAMPLE_FIELDS)
    if missing or extra:
        raise ValueError(f"sample {key}: json fields differ from the schema (missing {missing}, extra {extra})")
    if "." in key:
        raise ValueError(f"sample key {key!r} contains a dot; WebDataset readers would split it")
    payload = json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()
    if mask is None:
        return {"__key__": key, fmt: image, "json": payload}
    return {"__key__": key, fmt: image, "mask.png": mask, "json": payload}


class TarStream:
    """A tar writer for shard members: `tarfile`'s exact bytes, with headers built from a template.

    `tarfile` spends ~29 µs building each header (PAX checks, encoding), three times what GNU tar needs for a whole
    member, and shard members are small (a few kB). For ASCII names of at most 100 bytes (every sample key here)
    the header is a fixed template with the name, size and checksum filled in, byte-identical to
    `TarInfo.tobuf()` (tested); anything else goes through `tarfile`. The sha256 is computed while writing.
    """

    def __init__(self, stream, *, mode: int = 0o444, user: str = "dlcr", group: str = "dlcr") -> None:
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.offset = 0
        self._info = dict(mode=mode, uname=user, gname=group, mtime=0)
        template = bytearray(self._tarinfo("", 0).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        template[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
        self._template = bytes(template)
        self._template_sum = sum(self._template)

    def _tarinfo(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        for key, value in self._info.items():
            setattr(info, key, value)
        return info

    def _header(self, name: str, size: int) -> bytes:
        raw = name.encode("ascii", "replace")
        if len(raw) > 100 or not name.isascii() or size >= 8**11:
            return self._tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        size_field = b"%011o\0" % size
        checksum = self._template_sum + sum(raw) + sum(size_field) - sum(self._template[124:136])
        return b"".join(
            (
                raw,
                self._template[len(raw) : 124],
                size_field,
                self._template[136:148],
                b"%06o\0 " % checksum,
                self._template[156:],
            )
        )

    def _write(self, data: bytes) -> None:
        self.stream.write(data)
        self.sha256.update(data)
        self.offset += len(data)

    def add(self, name: str, data: bytes) -> None:
        self._write(self._header(name, len(data)))
        self._write(data)
        if len(data) % tarfile.BLOCKSIZE:
            self._write(tarfile.NUL * (tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE))

    def write_sample(self, sample: dict) -> None:
        """WebDataset layout: `<key>.<ext>` per member, extensions sorted (as `webdataset.TarWriter`)."""
        key = sample["__key__"]
        for ext in sorted(k for k in sample if not k.startswith("_")):
            self.add(f"{key}.{ext}", sample[ext])

    def finish(self) -> None:
        """End-of-archive blocks and the record padding `tarfile` adds (archives stay byte-identical to it)."""
        self._write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        remainder = self.offset % tarfile.RECORDSIZE
        if remainder:
            self._write(tarfile.NUL * (tarfile.RECORDSIZE - remainder))


class ShardWriter:
    """Writes one shard to a temp name; `close()` renames it into place and returns its `ShardResult`.

    Leaving the `with` block by an exception (Ctrl-C included) deletes the temp file: only complete shards exist.
    """

    def __init__(self, out_dir: Path, relpath: str, split: str) -> None:
        self.out_dir = Path(out_dir)
        self.relpath = relpath
        self.split = split
        self.path = self.out_dir / relpath
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_name(self.path)
        self._stream = open(self.tmp, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()/abort()
        self._tar = TarStream(self._stream)
        self.samples = 0

    def write(self, sample: dict) -> None:
        self._tar.write_sample(sample)
        self.samples += 1

    def close(self, skipped: list[Skipped] | None = None, rejected: list[dict] | None = None) -> ShardResult:
        self._tar.finish()
        self._stream.close()
        os.replace(self.tmp, self.path)
        return ShardResult(
            self.relpath,
            self.split,
            self.samples,
            self._tar.offset,
            self._tar.sha256.hexdigest(),
            skipped or [],
            rejected or [],
        )

    def abort(self) -> None:
        self._stream.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def shard_on_disk_matches(out_dir: Path, result: ShardResult) -> bool:
    """The shard on disk is the one recorded: same size and sha256 (else the build writes it again)."""
    path = Path(out_dir) / result.path
    return path.is_file() and path.stat().st_size == result.bytes and sha256_file(path) == result.sha256


# -- the shard loop of the build's generate stage and of import-release ------------------------------------------------
WriteShard = Callable[[ShardSpec, Callable[[int], None]], ShardResult]  # (spec, advance) -> the written shard


def shard_record_path(folder: OutFolder, spec: ShardSpec) -> Path:
    """`OUT/work/<dataset>/shards/<shard>.json`: the shard's `ShardResult`, written once its tar is in place."""
    return folder.work / "shards" / f"{spec.name}.json"


def completed_shard(folder: OutFolder, spec: ShardSpec, check_sha: bool = True) -> ShardResult | None:
    """The shard's record if it was written and (with `check_sha`) the tar on disk is complete and matches it."""
    data = read_json(shard_record_path(folder, spec))
    if data is None:
        return None
    result = ShardResult.from_dict(data)
    if check_sha and not shard_on_disk_matches(folder.out, result):
        return None
    return result


def run_shards(
    folder: OutFolder, reporter: Reporter, specs: list[ShardSpec], stage: str, start: Callable[[], WriteShard]
) -> list[ShardResult]:
    """Every shard of `specs`, in order: complete ones are kept, the others are split across processes and written
    by the function `start()` returns (called once, only when a shard is to be written: it may load models); it
    advances the `stage` progress by the variants it has handled."""
    todo = [spec for spec in specs if completed_shard(folder, spec) is None]
    folder.state.wait_for_everyone()  # every process decided `todo` before anyone writes a shard
    if todo:
        write_one = start()
        advance = reporter.stage(stage, sum(s.size for s in todo))
        with folder.state.split_between_processes(todo) as mine:
            for spec in mine:
                write_json_atomic(shard_record_path(folder, spec), write_one(spec, advance).to_dict())
        del write_one  # the models it holds are freed before the next stage
    reporter.done(stage)
    folder.state.wait_for_everyone()
    results = [completed_shard(folder, spec, check_sha=False) for spec in specs]
    missing = [spec.name for spec, r in zip(specs, results, strict=True) if r is None]
    if missing:
        raise RuntimeError(f"shards not written by any process: {missing}")
    return results
