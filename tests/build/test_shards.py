"""The shard tar writer: tarfile's exact bytes (so webdataset/datasets read it), atomic, deterministic."""

from __future__ import annotations

import io
import random
import tarfile
from itertools import pairwise

import pytest
import webdataset as wds

from dlcr_data.build.plan import PlannedVariant, write_plan_file
from dlcr_data.build.shards import ShardWriter, TarStream, assign_shards, encode_sample
from dlcr_data.files import sha256_file
from dlcr_data.records import Record


def samples(seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = [
        {
            "__key__": f"train_{i:03d}_1_c{rng.randint(1, 12)}_{i:06d}_v{i % 10}",
            "png": rng.randbytes(rng.choice([0, 1, 511, 512, 513, rng.randint(0, 9000)])),
            "mask.png": rng.randbytes(rng.randint(1, 900)),
            "json": b'{"pid": 1}',
        }
        for i in range(120)
    ]
    out.append({"__key__": "k" * 130, "json": b"{}"})  # a name over 100 bytes takes tarfile's own path
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tar_stream_is_byte_identical_to_webdataset_tarwriter(seed):
    ours, theirs = io.BytesIO(), io.BytesIO()
    stream = TarStream(ours)
    writer = wds.TarWriter(theirs, encoder=False, mtime=0, user="dlcr", group="dlcr", mode=0o444)
    for sample in samples(seed):
        stream.write_sample(sample)
        writer.write(sample)
    stream.finish()
    writer.close()
    assert ours.getvalue() == theirs.getvalue()
    assert stream.offset == len(ours.getvalue())


def test_shard_writer_result_matches_the_file(tmp_path):
    with ShardWriter(tmp_path, "demo/train-00000.tar", "train") as writer:
        for sample in samples(3):
            writer.write(sample)
        result = writer.close()
    path = tmp_path / result.path
    assert result.bytes == path.stat().st_size and result.sha256 == sha256_file(path)
    with tarfile.open(path) as tar:
        assert len(tar.getnames()) == sum(len(s) - 1 for s in samples(3))
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_an_exception_inside_the_writer_leaves_no_file(tmp_path):
    with pytest.raises(KeyboardInterrupt), ShardWriter(tmp_path, "demo/train-00000.tar", "train") as writer:
        writer.write(samples(0)[0])
        raise KeyboardInterrupt
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_sample_schema_is_enforced():
    with pytest.raises(ValueError, match="json fields differ"):
        encode_sample("k", b"", b"", {"pid": 1}, "png")


def variant(source: str, k: int, split: str = "train") -> PlannedVariant:
    return PlannedVariant(f"{source}_v{k}", source, split, k, "1_1", "2_1", "a | b | c", "p", "", 0)


def test_shards_keep_all_variants_of_a_source_together():
    plan = [variant(f"s{i}", k) for i in range(7) for k in range(3)] + [variant("q0", k, "query") for k in range(3)]
    specs = assign_shards(plan, 7)
    assert [s.name for s in specs] == [
        "train-00000.tar",
        "train-00001.tar",
        "train-00002.tar",
        "train-00003.tar",
        "query-00000.tar",
    ]
    for spec in specs:
        assert len(spec.variants) <= 7 or len({v.source_key for v in spec.variants}) == 1
        sources = {v.source_key for v in spec.variants}
        assert all(len([v for v in spec.variants if v.source_key == s]) == 3 for s in sources)
    assert sum(len(s.variants) for s in specs) == len(plan)


def test_a_plan_file_is_cut_as_its_list_and_each_shard_reads_only_its_rows(tmp_path):
    """Splits interleaved (query sources between train ones) and groups of 1 to 4 variants: the same shards, with
    the same variants, whether the plan is a list or a `PlanFile` whose rows stay on disk."""
    rows = []
    for i in range(40):
        split = "query" if i % 5 == 3 else "train"
        rows.append([variant(f"{split}{i}", k, split) for k in range(1 + i % 4)])
    records = [Record(vs[0].source_key, "p.png", 1, 0, "1_1", vs[0].split) for vs in rows]
    planned, _ = write_plan_file(zip(records, rows, strict=True), tmp_path / "plan.jsonl")
    flat = [v for vs in rows for v in vs]
    from_list, from_file = assign_shards(flat, 7), assign_shards(planned, 7)
    assert [(s.name, s.size) for s in from_file] == [(s.name, s.size) for s in from_list]
    assert [s.variants for s in from_file] == [s.variants for s in from_list]
    assert [s.name for s in from_file][:2] == ["train-00000.tar", "train-00001.tar"]  # splits in first-seen order
    spans = sorted(span for s in from_file for span in s.spans)  # every byte of the file in exactly one shard
    assert spans[0][0] == 0 and spans[-1][1] == (tmp_path / "plan.jsonl").stat().st_size
    assert all(a[1] <= b[0] for a, b in pairwise(spans))
    assert sum(b - a for a, b in spans) == spans[-1][1]
    assert len(spans) < len(rows)  # a source's rows next to the shard's previous ones extend its range
    # a shard is read from its byte ranges alone: the other rows may change, its own may not
    (tmp_path / "plan.jsonl").write_bytes((tmp_path / "plan.jsonl").read_bytes()[:-10])
    last = max(from_file, key=lambda s: s.spans[-1][1])
    assert [s.variants for s in from_file if s is not last] == [s.variants for s in from_list if s.name != last.name]
    with pytest.raises(ValueError):  # its last row was cut short
        last.variants  # noqa: B018
