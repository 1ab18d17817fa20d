"""The plan: for every source image and variant k, a target outfit and a seed.

Every choice is a pure function of (global seed, image key, k) and the sorted outfit pool, so the plan is the same
whatever the number of processes, the batch size or the order in which work finishes.

Samplers (`SAMPLERS`): `random`, DLCR's seeded draw from the other outfits; `similarity-diversity`, ClonedPerson's
(CVPR 2022): part of the targets from the source outfit's own cluster, the rest spread over the other clusters
(clusters from `outfit_clusters.cluster_outfits`). `run` is the build's plan stage: it streams the plan to
`plan.jsonl` and keeps only where each source's rows are (`PlanFile`); generation reads one shard's rows at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dlcr_data.build.options import DEFAULT_PROMPT_TEMPLATE, DEFAULT_SIMILAR_FRACTION, SAMPLERS
from dlcr_data.errors import UserError
from dlcr_data.files import sha256_file, temp_name
from dlcr_data.records import Record, Skipped

if TYPE_CHECKING:
    from dlcr_data.build.context import BuildContext
    from dlcr_data.build.outfit_clusters import OutfitClusters

# ClonedPerson: at most 7 outfits from one cluster (the paper's figure; not found in its released code)
DEFAULT_MAX_PER_CLUSTER = 7
Span = tuple[int, int]  # [start, end) byte range of plan.jsonl
Donors = Mapping[str, Sequence[Record]]  # clothes_id -> the training images wearing it


@dataclass(frozen=True)
class PlannedVariant:
    key: str  # `<source key>_v<k>`: the WebDataset sample key
    source_key: str
    split: str
    variant: int
    source_clothes_id: str
    target_clothes_id: str
    target_text: str  # "top | bottom | shoes"
    prompt: str
    negative_prompt: str
    seed: int  # the random seed of this variant's generation
    # The appearance provider (an image wearing the target outfit) for donor-based generators; "" / -1 otherwise.
    appearance_key: str = ""
    appearance_pid: int = -1
    # How the target was chosen: "random" (DLCR), or "similar"/"diverse" (similarity-diversity, with the
    # target outfit's cluster; -1 = noise or no clustering).
    sampling: str = "random"
    cluster_id: int = -1

    def to_json(self) -> str:
        return json.dumps(vars(self), sort_keys=True)  # the fields are flat: asdict's deep copy is wasted time


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (stable across runs and Python versions, unlike `hash`)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


def make_prompt(text: str, template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    top, bottom, shoes = (part.strip() for part in text.split("|"))
    return template.format(top=top, bottom=bottom, shoes=shoes, text=text)


def plan_variants(
    records: Iterable[Record], outfits: Mapping[str, str], variants: int, **options
) -> list[PlannedVariant]:
    """The whole plan as a list (`plan_sources`' rows, flattened; same arguments). The build streams it instead."""
    return [v for _, planned in plan_sources(records, outfits, variants, **options) for v in planned]


def plan_sources(
    records: Iterable[Record],
    outfits: Mapping[str, str],
    variants: int,
    *,
    seed: int = 0,
    negative_prompt: str = "",
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    donors: Donors | None = None,
    sampler: str = "random",
    clusters: OutfitClusters | None = None,
    source_embeddings: Mapping[str, np.ndarray] | None = None,
    similar_fraction: float = DEFAULT_SIMILAR_FRACTION,
    max_per_cluster: int = DEFAULT_MAX_PER_CLUSTER,
) -> Iterator[tuple[Record, list[PlannedVariant]]]:
    """(record, its variants) per record, lazily. Each image gets `variants` targets drawn from the *other* outfits
    of the pool (clothes_id -> text); an image whose own outfit is the only one gets none (`no_target_reason`).

    `sampler="random"` (DLCR's prompt pool): targets are distinct while the pool allows (a seeded permutation of
    the pool without the image's own outfit), and cycle through it again when `variants` exceeds the pool.

    `sampler="similarity-diversity"` (ClonedPerson) needs `clusters` over the pool (`outfit_clusters`);
    see `_Pool.similarity_diversity`. A source whose outfit is not clustered (e.g. a query image) is placed by its
    record's embedding in `source_embeddings` (key -> embedding, `OutfitClusters.assign`); without one it is
    treated as noise (all targets diverse). With either sampler, `clusters` also fills each variant's
    `cluster_id`.

    With `donors` (clothes_id -> the training images wearing it), each variant also gets an appearance provider:
    one of those images, drawn from (seed, key, k); outfits without a donor image are then left out of the pool.

    Python work per image is O(variants) (the seeded permutations stay O(pool), in numpy): only the entries the
    variants take are built, the same entries as the full ordered target list's.
    """
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if sampler == "similarity-diversity":
        if clusters is None:
            raise ValueError("sampler 'similarity-diversity' needs clusters (outfit_clusters.cluster_outfits)")
        if not 0.0 <= similar_fraction <= 1.0:
            raise UserError(f"--similar-fraction must be in [0, 1], not {similar_fraction}")
        if max_per_cluster < 1:
            raise UserError(f"max_per_cluster must be at least 1, not {max_per_cluster}")
    pool = _Pool(outfits, donors, clusters, max_per_cluster, grouped=sampler == "similarity-diversity")
    for rec in records:
        if sampler == "random":
            sequence, cycle = pool.random(rec, seed, variants)
        else:
            sequence, cycle = pool.similarity_diversity(rec, source_embeddings, seed, similar_fraction, variants)
        planned = []
        for k in range(variants if cycle else 0):
            target, sampling = sequence[k % cycle]  # entry k of the full list (cycling): k % cycle < len(sequence)
            planned.append(
                PlannedVariant(
                    key=f"{rec.key}_v{k}",
                    source_key=rec.key,
                    split=rec.split,
                    variant=k,
                    source_clothes_id=rec.clothes_id,
                    target_clothes_id=target,
                    target_text=outfits[target],
                    prompt=make_prompt(outfits[target], prompt_template),
                    negative_prompt=negative_prompt,
                    seed=derive_seed(seed, "generate", rec.key, k),
                    **pool.donor(target, seed, rec.key, k),
                    sampling=sampling,
                    cluster_id=pool.label[target],
                )
            )
        yield rec, planned


class _Pool:
    """The target pool (sorted outfit ids) and what every image's draw shares, computed once per plan."""

    def __init__(
        self, outfits: Mapping, donors: Donors | None, clusters: OutfitClusters | None, cap: int, grouped: bool
    ):
        self.ids = sorted(c for c in outfits if donors is None or donors.get(c))
        self.index = {c: i for i, c in enumerate(self.ids)}
        self.label = {c: clusters.cluster_of(c) if clusters is not None and c in clusters else -1 for c in self.ids}
        self.donors, self.clusters, self.cap = donors, clusters, cap
        self.wearing: dict[str, list[Record]] = {}  # an outfit's donors sorted by key, sorted once per outfit
        if not grouped:
            return
        # Diverse groups: a cluster ("c<label>") or a noise outfit alone ("n<id>"); members sorted (ids are).
        self.groups: dict[str, list[str]] = {}
        for c in self.ids:
            self.groups.setdefault(f"c{self.label[c]}" if self.label[c] >= 0 else f"n{c}", []).append(c)
        self.names = sorted(self.groups)
        self.name_index = {n: i for i, n in enumerate(self.names)}
        self.diverse_total = sum(min(len(m), cap) for m in self.groups.values())
        self.rows = {n: np.array([clusters.index(c) for c in m]) for n, m in self.groups.items() if n[0] == "c"}

    def random(self, rec: Record, seed: int, variants: int) -> tuple[list[tuple[str, str]], int]:
        """DLCR: the first min(variants, n) entries of a seeded permutation of the n other outfits, and n."""
        own = self.index.get(rec.clothes_id)
        n = len(self.ids) - (own is not None)
        if n == 0:
            return [], 0
        # numpy shuffles from the last position down, so even the first entries need the whole permutation:
        # it stays, in C; the candidate list (pool without the own outfit) is index arithmetic.
        order = np.random.default_rng(derive_seed(seed, "targets", rec.key)).permutation(n)[: min(variants, n)]
        skip = n + 1 if own is None else own
        return [(self.ids[i + (i >= skip)], "random") for i in order.tolist()], n

    def similarity_diversity(
        self, rec: Record, embeddings: Mapping | None, seed: int, fraction: float, variants: int
    ) -> tuple[list[tuple[str, str]], int]:
        """ClonedPerson: the first entries of the image's ordered targets, as (clothes_id, "similar" | "diverse"),
        and the full list's length (variant k takes entry k, cycling).

        similar: outfits of the source outfit's own cluster, nearest to the source first (ties by id), at most
          `max_per_cluster` (hard negatives). A noise source has no cluster, so none.
        diverse: the other clusters, each noise outfit its own singleton cluster, visited round-robin in a seeded
          order (one outfit per cluster per round, in a seeded order within the cluster), at most
          `max_per_cluster` from any one cluster.
        Entry k is similar when ceil((k + 1) f) > ceil(k f), f = `fraction`: the similar share is f in every
        prefix (so in every `--variants`), and the list does not depend on `variants`. When one kind runs out
        the other fills the remaining entries.
        """
        own = rec.clothes_id if rec.clothes_id in self.index else None
        own_cluster, dist = _source_cluster(rec, self.clusters, embeddings)
        similar: list[str] = []
        removed = []  # positions in `names` of the groups this image cannot draw from
        if own_cluster >= 0 and f"c{own_cluster}" in self.name_index:
            name = f"c{own_cluster}"
            removed.append(self.name_index[name])
            members, rows = self.groups[name], self.rows[name]
            if own is not None and self.label[own] == own_cluster:
                at = bisect_left(members, own)
                members, rows = members[:at] + members[at + 1 :], np.delete(rows, at)
            order = np.lexsort((np.arange(len(rows)), dist[rows]))[: self.cap]  # nearest first, ties by id
            similar = [members[i] for i in order.tolist()]
        if own is not None and self.label[own] < 0:
            removed.append(self.name_index[f"n{own}"])  # its own singleton group: empty without the own outfit
        removed.sort()
        cap = self.cap
        diverse_total = self.diverse_total - sum(min(len(self.groups[self.names[i]]), cap) for i in removed)
        total = len(similar) + diverse_total
        diverse = self._diverse(rec, seed, removed)
        sequence: list[tuple[str, str]] = []
        s = d = 0
        while len(sequence) < min(variants, total):
            k = len(sequence)
            want_similar = _similar_count(k + 1, fraction) > _similar_count(k, fraction)
            if (want_similar and s < len(similar)) or d == diverse_total:
                sequence.append((similar[s], "similar"))
                s += 1
            else:
                sequence.append((next(diverse), "diverse"))
                d += 1
        return sequence, total

    def _diverse(self, rec: Record, seed: int, removed: list[int]) -> Iterator[str]:
        """The diverse targets in round-robin order, lazily: a group is shuffled only when one of its outfits is
        taken (round 0 takes one outfit of each group, so `variants` entries rarely reach past it)."""
        count = len(self.names) - len(removed)
        visit = np.random.default_rng(derive_seed(seed, "clusters", rec.key)).permutation(count)
        queues: dict[int, list[str]] = {}

        def queue(p: int) -> list[str]:  # the p-th visited group, shuffled (noise singletons need no shuffle)
            if p not in queues:
                i = int(visit[p])
                for r in removed:  # `removed` is sorted: map a position among the kept names to one in `names`
                    i += i >= r
                name = self.names[i]
                members = self.groups[name]
                if len(members) > 1:
                    order = np.random.default_rng(derive_seed(seed, "diverse", rec.key, name)).permutation(len(members))
                    members = [members[j] for j in order.tolist()]
                queues[p] = members[: self.cap]
            return queues[p]

        for p in range(count):
            yield queue(p)[0]
        for r in range(1, self.cap):
            for p in range(count):
                if len(queue(p)) > r:
                    yield queue(p)[r]

    def donor(self, outfit: str, seed: int, key: str, k: int) -> dict:
        """The appearance provider of variant k of image `key`: one of the images wearing `outfit` (by key)."""
        if self.donors is None:
            return {}
        if outfit not in self.wearing:
            self.wearing[outfit] = sorted(self.donors[outfit], key=lambda r: r.key)
        donor = self.wearing[outfit][derive_seed(seed, "donor", key, k) % len(self.wearing[outfit])]
        return {"appearance_key": donor.key, "appearance_pid": donor.pid}


def _similar_count(n: int, fraction: float) -> int:
    """How many of the first n entries are similar: ceil(n * fraction), robust to float error (0.3 * 10)."""
    return math.ceil(n * fraction - 1e-9)


def _source_cluster(
    rec: Record, clusters: OutfitClusters, source_embeddings: Mapping[str, np.ndarray] | None
) -> tuple[int, np.ndarray | None]:
    """The source's cluster and its distances to the clustered outfits (None when unknown)."""
    if rec.clothes_id in clusters:
        return clusters.cluster_of(rec.clothes_id), clusters.distances[clusters.index(rec.clothes_id)]
    if source_embeddings is not None and rec.key in source_embeddings:
        embedding = source_embeddings[rec.key]
        return clusters.assign(embedding), clusters.distances_from(embedding)
    return -1, None


def no_target_reason(record: Record, outfits: Mapping[str, str], donors: Donors | None = None) -> str:
    """Why `plan_variants` gives `record` no variant: the pool holds no outfit but its own (or none at all)."""
    pool = sorted(c for c in outfits if donors is None or donors.get(c))
    where = "the training pool" + (" (outfits with a donor image)" if donors is not None else "")
    if not pool:
        return f"no target outfit: {where} is empty"
    return f"no target outfit: {where} holds no outfit but its own ({record.clothes_id})"


# -- plan.jsonl ---------------------------------------------------------------------------------------------------
class PlannedSource(NamedTuple):
    """Where one source image's variants are in plan.jsonl: `rows` lines in bytes [start, end)."""

    split: str
    source_key: str
    start: int
    end: int
    rows: int


@dataclass(frozen=True)
class PlanFile:
    """A plan written to `plan.jsonl`: the rows stay on disk; in memory only where each source's rows are
    (O(sources), not O(variants)). `read` gives the rows of some byte ranges: one shard's at a time."""

    path: Path
    sources: list[PlannedSource]
    variants: int

    def __len__(self) -> int:
        return self.variants

    def __iter__(self) -> Iterator[PlannedVariant]:
        return _rows(self.path)

    def read(self, spans: Sequence[Span]) -> tuple[PlannedVariant, ...]:
        rows: list[PlannedVariant] = []
        with open(self.path, "rb") as f:
            for start, end in spans:
                f.seek(start)
                rows += [_row(line) for line in f.read(end - start).splitlines()]
        return tuple(rows)


def _row(line: bytes | str) -> PlannedVariant:
    return PlannedVariant(**json.loads(line))


def _rows(path: Path) -> Iterator[PlannedVariant]:
    with open(path, "rb") as f:
        yield from (_row(line) for line in f if line.strip())


def write_plan_file(
    planned: Iterable[tuple[Record, list[PlannedVariant]]], path: Path, *, write: bool = True
) -> tuple[PlanFile, list[Record]]:
    """Streams `plan_sources`' rows to `path`, one JSON line per variant, atomically and only if its bytes change;
    returns the `PlanFile` and the records without a variant. `write=False` (every process but main) only computes
    where the rows are: the plan is a pure function, so they are where main writes them."""
    path = Path(path)
    sources: list[PlannedSource] = []
    unplanned: list[Record] = []
    offset = rows = 0
    digest, tmp = hashlib.sha256(), temp_name(path)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb", buffering=1 << 20) if write else open(os.devnull, "wb") as f:
            for rec, variants in planned:
                if not variants:
                    unplanned.append(rec)
                    continue
                data = "".join(v.to_json() + "\n" for v in variants).encode("utf-8")
                f.write(data)
                digest.update(data)
                sources.append(PlannedSource(rec.split, rec.key, offset, offset + len(data), len(variants)))
                offset, rows = offset + len(data), rows + len(variants)
        if write:
            same = path.is_file() and path.stat().st_size == offset and sha256_file(path) == digest.hexdigest()
            if not same:  # an unchanged plan keeps its file (a resumed build rewrites nothing)
                os.replace(tmp, path)
    finally:
        if write:
            tmp.unlink(missing_ok=True)
    return PlanFile(path, sources, rows), unplanned


def read_plan(path: Path) -> list[PlannedVariant]:
    return list(_rows(path))


# -- the stage ----------------------------------------------------------------------------------------------------
def run(ctx: BuildContext, records: list[Record], pool: list[Record], outfit_texts: dict[str, str]) -> PlanFile:
    """Targets, seeds and (for donor-based generators) appearance providers for every (image, variant); computed
    identically by every process, streamed by main to `work/<dataset>/plan.jsonl`. Returns where the rows are."""
    opts = ctx.opts
    donors = None
    if ctx.backends.generator.needs_donor:
        donors = {}
        for r in pool:
            donors.setdefault(r.clothes_id, []).append(r)
    clusters = _outfit_clusters(ctx, records, pool, outfit_texts) if opts.sampler != "random" else {}
    if clusters:
        ctx.clusters = {"sampler": opts.sampler, **clusters["clusters"].summary()}
    planned = plan_sources(
        records,
        outfit_texts,
        opts.variants,
        seed=opts.seed,
        negative_prompt=opts.negative_prompt,
        prompt_template=opts.prompt_template,
        donors=donors,
        sampler=opts.sampler,
        similar_fraction=opts.similar_fraction,
        **clusters,
    )
    plan, unplanned = write_plan_file(planned, ctx.work / "plan.jsonl", write=ctx.main())
    ctx.skipped += [
        {"path": r.path, "reason": no_target_reason(r, outfit_texts, donors), "stage": "plan"} for r in unplanned
    ]
    ctx.state.wait_for_everyone()
    return plan


def _outfit_clusters(
    ctx: BuildContext, records: list[Record], pool: list[Record], outfit_texts: dict[str, str]
) -> dict:
    """ClonedPerson's outfit clusters over the training outfits, and every source's own outfit embedding."""
    from dlcr_data.build.outfit_clusters import outfit_clusters_from_records
    from dlcr_data.build.parse import load_garment_map, load_image

    def load_pixels(record: Record) -> np.ndarray:
        image = load_image(ctx.root, record)
        if isinstance(image, Skipped):
            raise OSError(image.reason)  # the clustering leaves such records out
        return np.asarray(image)

    def load_map(record: Record) -> np.ndarray:
        return load_garment_map(ctx.masks, record.key)

    described = [r for r in pool if r.clothes_id in outfit_texts]  # the outfits a target can be
    clusters, embeddings = outfit_clusters_from_records(described, load_pixels, load_map, sources=records)
    return {"clusters": clusters, "source_embeddings": embeddings}
