"""Per-dataset evaluation protocols (what CAL's `test.py` reports), and CCVID's test-time clips.

Each dataset lists the (query split, gallery split, mode, camera filter) pairs that CAL evaluates; see
docs/datasets.md §4 "Per-dataset protocol":

- PRCC: standard evaluation twice, query B -> gallery A (`sc`) and query C -> gallery A (`cc`), both in
  `general` mode: query cameras never equal the gallery's, so nothing is junked and every same-pid A image is
  a positive (CAL's multi-shot protocol over the full A gallery, not the PRCC paper's single-shot one).
- LTCC: `general` and `cc` on query -> gallery (the two figures published).
- VC-Clothes: `general` over all cameras; `sc` = raw cameras 2 and 3 only, `cc` = raw cameras 3 and 4 only,
  both in `general` mode (CAL's `vcclothes_sc` / `vcclothes_cc` presets filter query and gallery, nothing more).
- CCVID: `general`, `sc`, `cc` on tracklet features (`clip_indices`, `tracklet_feature`).
- LaST: `general` on the test split (every image its own camera: nothing junked). CAL does not evaluate the
  val split; pass `protocols=[LAST_VAL]` for it.
- demo: `general`, `sc`, `cc`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlcr_data.loaders.vcclothes import EVAL_PRESETS, filter_cameras
from dlcr_data.records import Record
from dlcr_data.reid.metrics import evaluate_features


@dataclass(frozen=True)
class Protocol:
    """One reported evaluation: a query split against a gallery split in one mode of `evaluate_rank`."""

    name: str  # the figure's name in results, e.g. "cc"
    query_split: str
    gallery_split: str
    mode: str  # "general" | "cc" | "sc" (metrics.MODES)
    cameras: tuple[int, ...] | None = None  # raw (1-based) cameras kept in query and gallery; None = all


def _standard(*modes: str) -> list[Protocol]:
    return [Protocol(m, "query", "gallery", m) for m in modes]


PROTOCOLS: dict[str, list[Protocol]] = {
    "prcc": [Protocol("sc", "query_sc", "gallery", "general"), Protocol("cc", "query_cc", "gallery", "general")],
    "ltcc": _standard("general", "cc"),
    "vcclothes": [
        Protocol("general", "query", "gallery", "general", EVAL_PRESETS["all"]),
        Protocol("sc", "query", "gallery", "general", EVAL_PRESETS["sc"]),
        Protocol("cc", "query", "gallery", "general", EVAL_PRESETS["cc"]),
    ],
    "ccvid": _standard("general", "sc", "cc"),
    "last": _standard("general"),
    "demo": _standard("general", "sc", "cc"),
}

LAST_VAL = Protocol("val", "val_query", "val_gallery", "general")
"""LaST's validation pair (100 x 21,279), not part of CAL's reported protocol."""


def protocols_for(name: str, names: Iterable[str] | None = None) -> list[Protocol]:
    """The protocols of dataset `name`, optionally only those whose protocol name is in `names`."""
    if name.lower() not in PROTOCOLS:
        raise ValueError(f"no evaluation protocol for dataset {name!r}; known: {', '.join(PROTOCOLS)}")
    protocols = PROTOCOLS[name.lower()]
    return _select(protocols, names, name)


def _select(protocols: list[Protocol], names: Iterable[str] | None, dataset: str) -> list[Protocol]:
    if names is None:
        return list(protocols)
    names = list(names)
    unknown = set(names) - {p.name for p in protocols}
    if unknown:
        known = ", ".join(p.name for p in protocols)
        raise ValueError(f"{dataset}: unknown protocol(s) {', '.join(sorted(unknown))}; choose from: {known}")
    return [p for p in protocols if p.name in names]


def _features_of(records: Sequence[Record], features: Mapping[str, torch.Tensor], split: str) -> torch.Tensor:
    missing = [r.key for r in records if r.key not in features]
    if missing:
        raise KeyError(f"{len(missing)} {split} record(s) have no feature, e.g. {missing[0]!r}")
    if not records:
        raise ValueError(f"split {split!r} is empty (after the camera filter)")
    return torch.stack([torch.as_tensor(features[r.key]) for r in records])


def evaluate_dataset(
    name: str,
    splits: Mapping[str, Sequence[Record]],
    features: Mapping[str, torch.Tensor],
    names: Iterable[str] | None = None,
    protocols: Sequence[Protocol] | None = None,
    max_rank: int = 50,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, dict]:
    """Every protocol of dataset `name` -> `evaluate_rank`'s result dict, keyed by protocol name.

    `splits` maps split names to records (`loaders.load(name, root).splits`, or the `Loaded` itself);
    `features` maps record keys to feature vectors (for CCVID: one `tracklet_feature` per tracklet record).
    `names` keeps only the protocols so named (e.g. `["cc"]`); `protocols` replaces the dataset's list (e.g.
    `[LAST_VAL]`). Protocols with the same query, gallery and cameras share one pass over the distances.
    """
    chosen = _select(list(protocols), names, name) if protocols is not None else protocols_for(name, names)
    groups: dict[tuple, list[Protocol]] = {}
    for p in chosen:
        groups.setdefault((p.query_split, p.gallery_split, p.cameras), []).append(p)
    results: dict[str, dict] = {}
    for (q_split, g_split, cameras), group in groups.items():
        query = filter_cameras(splits[q_split], cameras)
        gallery = filter_cameras(splits[g_split], cameras)
        modes = [p.mode for p in group]
        clothes = any(m != "general" for m in modes)
        per_mode = evaluate_features(
            _features_of(query, features, q_split),
            _features_of(gallery, features, g_split),
            [r.pid for r in query],
            [r.pid for r in gallery],
            [r.camid for r in query],
            [r.camid for r in gallery],
            [r.clothes_id for r in query] if clothes else None,
            [r.clothes_id for r in gallery] if clothes else None,
            modes=modes,
            max_rank=max_rank,
            chunk_size=chunk_size,
            device=device,
        )
        for p in group:
            results[p.name] = per_mode[p.mode]
    return {p.name: results[p.name] for p in chosen}


# -- CCVID: test-time clips and tracklet features ----------------------------------------------------------------
def clip_indices(num_frames: int, seq_len: int = 8, stride: int = 4) -> list[list[int]]:
    """Frame indices of the equal-length test clips of one tracklet, as CAL's `_recombination_for_testset`
    (CCVID test: `SEQ_LEN=8`, `SAMPLING_STRIDE=4`).

    1. Each full block of seq_len*stride frames gives `stride` interleaved clips: offsets 0..stride-1, step
       `stride` (frames 0,4,..,28 / 1,5,..,29 / ...).
    2. The rest of the tracklet after the last full block: with r = its length, r // seq_len clips with the
       reduced stride r // seq_len, interleaved the same way, over its first seq_len * (r // seq_len) frames.
    3. The frames still left (fewer than seq_len: from num_frames // seq_len * seq_len on) form one last clip,
       loop-padded (repeated cyclically) to seq_len.

    Every frame lands in exactly one clip, and there are ceil(num_frames / seq_len) clips (CAL asserts it).
    """
    if num_frames < 0 or seq_len < 1 or stride < 1:
        raise ValueError(f"need num_frames >= 0, seq_len >= 1, stride >= 1; got {num_frames}, {seq_len}, {stride}")
    block = seq_len * stride
    clips = []
    for base in range(0, num_frames // block * block, block):
        clips += [list(range(base + j, base + block, stride)) for j in range(stride)]
    base = num_frames // block * block
    reduced = (num_frames - base) // seq_len
    clips += [list(range(base + j, base + seq_len * reduced, reduced)) for j in range(reduced)]
    tail = list(range(num_frames // seq_len * seq_len, num_frames))
    if tail:
        clips.append([tail[i % len(tail)] for i in range(seq_len)])
    assert len(clips) == math.ceil(num_frames / seq_len), (num_frames, len(clips))
    return clips


def tracklet_feature(clip_feats: torch.Tensor) -> torch.Tensor:
    """A tracklet's feature from its clips' (num_clips x D): their mean, L2-normalised (CAL `extract_vid_feature`)."""
    if clip_feats.ndim != 2 or len(clip_feats) == 0:
        raise ValueError(f"expected (num_clips >= 1, D) clip features, got shape {tuple(clip_feats.shape)}")
    return F.normalize(clip_feats.float().mean(0), dim=0)
