"""The plan: for every source image and variant k, a target outfit and a seed.

Every choice is a pure function of (global seed, image key, k) and the sorted outfit pool, so the plan is the same
whatever the number of processes, the batch size or the order in which work finishes.

Samplers (`SAMPLERS`): `random`, DLCR's seeded draw from the other outfits; `similarity-diversity`, ClonedPerson's
(CVPR 2022): part of the targets from the source outfit's own cluster, the rest spread over the other clusters
(clusters from `outfit_clusters.cluster_outfits`). `run` is the build's plan stage.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dlcr_data.build.options import DEFAULT_PROMPT_TEMPLATE, DEFAULT_SIMILAR_FRACTION, SAMPLERS
from dlcr_data.errors import UserError
from dlcr_data.files import write_lines_atomic
from dlcr_data.records import Record, Skipped

if TYPE_CHECKING:
    from dlcr_data.build.context import BuildContext
    from dlcr_data.build.outfit_clusters import OutfitClusters

# ClonedPerson: at most 7 outfits from one cluster (the paper's figure; not found in its released code)
DEFAULT_MAX_PER_CLUSTER = 7


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
        return json.dumps(asdict(self), sort_keys=True)


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (stable across runs and Python versions, unlike `hash`)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


def make_prompt(text: str, template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    top, bottom, shoes = (part.strip() for part in text.split("|"))
    return template.format(top=top, bottom=bottom, shoes=shoes, text=text)


def plan_variants(
    records: Iterable[Record],
    outfits: Mapping[str, str],
    variants: int,
    *,
    seed: int = 0,
    negative_prompt: str = "",
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    donors: Mapping[str, Sequence[Record]] | None = None,
    sampler: str = "random",
    clusters: OutfitClusters | None = None,
    source_embeddings: Mapping[str, np.ndarray] | None = None,
    similar_fraction: float = DEFAULT_SIMILAR_FRACTION,
    max_per_cluster: int = DEFAULT_MAX_PER_CLUSTER,
) -> list[PlannedVariant]:
    """Each image gets `variants` targets drawn from the *other* outfits of the pool (clothes_id -> text); an image
    whose own outfit is the only one gets none (`no_target_reason` says why; the plan stage lists it as skipped).

    `sampler="random"` (DLCR's prompt pool): targets are distinct while the pool allows (a seeded permutation of
    the pool without the image's own outfit), and cycle through it again when `variants` exceeds the pool.

    `sampler="similarity-diversity"` (ClonedPerson) needs `clusters` over the pool (`outfit_clusters`);
    see `_similarity_diversity`. A source whose outfit is not clustered (e.g. a query image) is placed by its
    record's embedding in `source_embeddings` (key -> embedding, `OutfitClusters.assign`); without one it is
    treated as noise (all targets diverse). With either sampler, `clusters` also fills each variant's
    `cluster_id`.

    With `donors` (clothes_id -> the training images wearing it), each variant also gets an appearance provider:
    one of those images, drawn from (seed, key, k); outfits without a donor image are then left out of the pool.
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
    pool = sorted(c for c in outfits if donors is None or donors.get(c))
    label = {c: clusters.cluster_of(c) if clusters is not None and c in clusters else -1 for c in pool}
    plan: list[PlannedVariant] = []
    for rec in records:
        candidates = [c for c in pool if c != rec.clothes_id]
        if not candidates:
            continue
        if sampler == "random":
            order = np.random.default_rng(derive_seed(seed, "targets", rec.key)).permutation(len(candidates))
            sequence = [(candidates[int(i)], "random") for i in order]
        else:
            sequence = _similarity_diversity(
                rec, candidates, label, clusters, source_embeddings, seed, similar_fraction, max_per_cluster
            )
        for k in range(variants):
            target, sampling = sequence[k % len(sequence)]
            plan.append(
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
                    **_donor(donors, target, seed, rec.key, k),
                    sampling=sampling,
                    cluster_id=label[target],
                )
            )
    return plan


def _similarity_diversity(
    rec: Record,
    candidates: list[str],
    label: Mapping[str, int],
    clusters: OutfitClusters,
    source_embeddings: Mapping[str, np.ndarray] | None,
    seed: int,
    similar_fraction: float,
    max_per_cluster: int,
) -> list[tuple[str, str]]:
    """The ordered targets of one image, as (clothes_id, "similar" | "diverse"); variant k takes entry k (cycling).

    similar: outfits of the source outfit's own cluster, nearest to the source first (ties by id), at most
      `max_per_cluster` (hard negatives). A noise source has no cluster, so none.
    diverse: the other clusters, each noise outfit its own singleton cluster, visited round-robin in a seeded
      order (one outfit per cluster per round, in a seeded order within the cluster), at most `max_per_cluster`
      from any one cluster.
    Entry k is similar when ceil((k + 1) f) > ceil(k f), f = similar_fraction: the similar share is f in every
    prefix (so in every `--variants`), and the list does not depend on `variants`. When one kind runs out the
    other fills the remaining entries.
    """
    own_cluster, dist = _source_cluster(rec, clusters, source_embeddings)
    similar = [c for c in candidates if own_cluster >= 0 and label[c] == own_cluster]
    if dist is not None:
        similar.sort(key=lambda c: (float(dist[clusters.index(c)]), c))
    similar = similar[:max_per_cluster]
    groups: dict[str, list[str]] = {}
    for c in candidates:
        if own_cluster < 0 or label[c] != own_cluster:
            groups.setdefault(f"c{label[c]}" if label[c] >= 0 else f"n{c}", []).append(c)
    names = sorted(groups)  # candidates are sorted, so each group is too
    visit = np.random.default_rng(derive_seed(seed, "clusters", rec.key)).permutation(len(names))
    queues = []
    for i in visit:
        members = groups[names[int(i)]]
        if len(members) > 1:  # noise singletons need no shuffle (and are most groups: skip the cost)
            order = np.random.default_rng(derive_seed(seed, "diverse", rec.key, names[int(i)]))
            members = [members[int(j)] for j in order.permutation(len(members))]
        queues.append(members[:max_per_cluster])
    diverse = [q[r] for r in range(max(map(len, queues), default=0)) for q in queues if r < len(q)]

    sequence: list[tuple[str, str]] = []
    s = d = 0
    while s < len(similar) or d < len(diverse):
        k = len(sequence)
        want_similar = _similar_count(k + 1, similar_fraction) > _similar_count(k, similar_fraction)
        if (want_similar and s < len(similar)) or d == len(diverse):
            sequence.append((similar[s], "similar"))
            s += 1
        else:
            sequence.append((diverse[d], "diverse"))
            d += 1
    return sequence


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


def _donor(donors: Mapping[str, Sequence[Record]] | None, outfit: str, seed: int, key: str, k: int) -> dict:
    """The appearance provider of variant k of image `key`: one of the images wearing `outfit` (sorted by key)."""
    if donors is None:
        return {}
    wearing = sorted(donors[outfit], key=lambda r: r.key)
    donor = wearing[derive_seed(seed, "donor", key, k) % len(wearing)]
    return {"appearance_key": donor.key, "appearance_pid": donor.pid}


def no_target_reason(
    record: Record, outfits: Mapping[str, str], donors: Mapping[str, Sequence[Record]] | None = None
) -> str:
    """Why `plan_variants` gives `record` no variant: the pool holds no outfit but its own (or none at all)."""
    pool = sorted(c for c in outfits if donors is None or donors.get(c))
    where = "the training pool" + (" (outfits with a donor image)" if donors is not None else "")
    if not pool:
        return f"no target outfit: {where} is empty"
    return f"no target outfit: {where} holds no outfit but its own ({record.clothes_id})"


def write_plan(plan: list[PlannedVariant], path: Path) -> None:
    write_lines_atomic(path, (p.to_json() + "\n" for p in plan))  # streamed: 1M variants would be ~1 GiB joined


def read_plan(path: Path) -> list[PlannedVariant]:
    return [PlannedVariant(**json.loads(line)) for line in path.read_text().splitlines() if line]


# -- the stage ----------------------------------------------------------------------------------------------------
def run(
    ctx: BuildContext, records: list[Record], pool: list[Record], outfit_texts: dict[str, str]
) -> list[PlannedVariant]:
    """Targets, seeds and (for donor-based generators) appearance providers for every (image, variant); computed
    identically by every process, written by main to `work/<dataset>/plan.jsonl`."""
    opts = ctx.opts
    donors = None
    if ctx.backends.generator.needs_donor:
        donors = {}
        for r in pool:
            donors.setdefault(r.clothes_id, []).append(r)
    clusters = _outfit_clusters(ctx, records, pool, outfit_texts) if opts.sampler != "random" else {}
    if clusters:
        ctx.clusters = {"sampler": opts.sampler, **clusters["clusters"].summary()}
    plan = plan_variants(
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
    planned = {v.source_key for v in plan}
    ctx.skipped += [
        {"path": r.path, "reason": no_target_reason(r, outfit_texts, donors), "stage": "plan"}
        for r in records
        if r.key not in planned
    ]
    path = ctx.work / "plan.jsonl"
    if ctx.main() and not (path.exists() and read_plan(path) == plan):
        write_plan(plan, path)
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
