"""The generate stage: every planned variant generated, passed through the identity gate (if any), into shards.

Shards are the work units: complete ones are kept, the rest are split across processes. A source is loaded, and
its mask encoded, once for all its variants (they are consecutive in the plan). Gated shards are kept only when
they were decided by the current gate rule (`GATE_RULE`, recorded in `work/<dataset>/gate_rule.json`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dlcr_data.build.annotate.gate import GATE_RULE, identity_label
from dlcr_data.build.generate import GenerationRequest, Generator
from dlcr_data.build.parse import clothing_mask, load_garment_map, load_image
from dlcr_data.build.plan import PlanFile, PlannedVariant
from dlcr_data.build.sample import variant_meta
from dlcr_data.build.shards import (
    ShardResult,
    ShardSpec,
    ShardWriter,
    WriteShard,
    assign_shards,
    encode_image,
    encode_sample,
    run_shards,
    shard_record_path,
)
from dlcr_data.files import write_json_atomic
from dlcr_data.manifest import drop_entry, read_json
from dlcr_data.records import Record, Skipped

if TYPE_CHECKING:
    from dlcr_data.build.annotate.body_shape import BodyShapes
    from dlcr_data.build.annotate.gate import GateDecision, IdentityGate
    from dlcr_data.build.context import BuildContext

GATE_RULE_FILE = "gate_rule.json"  # in work/<dataset>/: {"rule": the GATE_RULE its gated shards were decided by}


@dataclass
class Generation:
    """What generating a shard needs besides the plan: the generator, records by key and the optional extras."""

    generator: Generator
    sources: dict[str, Record]
    donors: dict[str, Record]
    shapes: BodyShapes | None = None
    gate: IdentityGate | None = None  # fitted on the built training sources


def run(
    ctx: BuildContext,
    plan: PlanFile,  # the rows stay in plan.jsonl: each shard reads its own (`ShardSpec.variants`)
    sources: list[Record],
    pool: list[Record],
    shapes: BodyShapes | None = None,
) -> list[ShardResult]:
    """Shards are the work units: complete ones are kept, the rest are split across processes."""
    opts = ctx.opts

    def start() -> WriteShard:  # only when a shard is left to write: the generator (and gate) load here
        generator = ctx.backends.generator.from_options(opts, ctx.spec)
        gen = Generation(generator, {r.key: r for r in sources}, {r.key: r for r in pool}, shapes)
        if opts.identity_gate:
            gen.gate = _fit_gate(ctx, sources)
        return lambda spec, advance: _generate_shard(ctx, spec, gen, advance)

    specs = assign_shards(plan, opts.shard_samples)
    if opts.identity_gate:
        _retire_other_rule_shards(ctx, specs)
    return run_shards(ctx.folder, ctx.reporter, specs, "generate", start)


def _retire_other_rule_shards(ctx: BuildContext, specs: list[ShardSpec]) -> None:
    """Gated shards decided by another gate rule are never reused: the options match, so without this a rerun would
    keep them. No rule recorded means one made before rules were recorded, whose gate let test labels decide.
    Their records go (so `run_shards` writes them again), and so does the manifest entry that lists them."""
    folder = ctx.folder
    path = ctx.work / GATE_RULE_FILE
    if read_json(path) == {"rule": GATE_RULE}:  # ungated builds never get here: their work/ stays as it was
        return
    folder.state.wait_for_everyone()  # every process read the rule before main changes anything
    if folder.main():
        records = [p for p in (shard_record_path(folder, spec) for spec in specs) if p.is_file()]
        if records:
            ctx.reporter.note(
                f"{len(records)} shard(s) in {ctx.out} were gated under another identity-gate rule: regenerating them",
                warning=True,
            )
            drop_entry(ctx.out, ctx.opts.dataset)
        for record in records:
            record.unlink()
        write_json_atomic(path, {"rule": GATE_RULE})
    folder.state.wait_for_everyone()


def _fit_gate(ctx: BuildContext, sources: list[Record]) -> IdentityGate:
    """The identity gate with one prototype per identity from the built training images only: a test split's
    labels must decide nothing (issue 11), so its variants are judged against their own sources (`check`)."""
    from dlcr_data.build.annotate.gate import IdentityGate

    opts = ctx.opts
    options = {} if opts.gate_threshold is None else {"threshold": opts.gate_threshold}
    gate = IdentityGate(
        opts.identity_gate, batch_size=max(opts.batch_size, 64), device=str(ctx.state.device), **options
    )
    train = [r for r in sources if identity_label(r) is not None]
    if not train:  # no training split built: every variant is judged against its source, no prototype needed
        return gate
    advance = ctx.reporter.stage("gate prototypes", len(train))

    def images():  # lazily: the gate decodes and embeds a batch at a time
        for r in train:
            image = load_image(ctx.root, r)
            yield None if isinstance(image, Skipped) else image  # unreadable: no vote (generation lists it)

    gate.fit(images(), [r.pid for r in train], progress=advance)  # advances once a batch is embedded
    ctx.reporter.done("gate prototypes")
    return gate


def _generate_shard(ctx: BuildContext, spec: ShardSpec, gen: Generation, advance: Callable[[int], None]) -> ShardResult:
    """Generate one shard's variants in batches, pass them through the identity gate (if any) and write the tar
    atomically; gate rejections are recorded with their scores."""
    opts = ctx.opts
    skipped: list[Skipped] = []
    rejected: list[dict] = []
    with ShardWriter(ctx.out, f"{opts.dataset}/{spec.name}", spec.split) as writer:
        for batch in _batches(ctx, spec, gen, skipped):
            requests = [req for req, _, _ in batch]
            images = gen.generator.generate(requests)
            scores: list[float | None] = [None] * len(batch)
            keep = [True] * len(batch)
            if gen.gate is not None:
                pids = [identity_label(gen.sources[v.source_key]) for _, v, _ in batch]  # None: a test split
                decisions = gen.gate.check(images, [r.image for r in requests], [r.mask for r in requests], pids)
                scores, keep = [d.score for d in decisions], [d.keep for d in decisions]
                rejected += [_rejection(v, d) for (_, v, _), d in zip(batch, decisions, strict=True) if not d.keep]
            for (request, variant, mask_png), image, score, kept in zip(batch, images, scores, keep, strict=True):
                if not kept:
                    continue
                if gen.generator.needs_donor and np.array_equal(np.asarray(image), np.asarray(request.image)):
                    # the donor shows none of the masked garments: a copy of the source is no variant
                    path = gen.sources[variant.source_key].path
                    skipped.append(Skipped(path, f"unchanged variant {variant.variant}: donor shows no masked garment"))
                    continue
                meta = variant_meta(
                    opts.dataset,
                    variant,
                    gen.sources[variant.source_key],
                    image,
                    generator=gen.generator.name,
                    model=gen.generator.model_id,
                    shapes=gen.shapes,
                    gate_model=gen.gate.model_id if gen.gate is not None else None,
                    gate_score=score,
                )
                image_bytes = encode_image(image, opts.image_format)
                writer.write(encode_sample(variant.key, image_bytes, mask_png, meta.to_dict(), opts.image_format))
            advance(len(batch))
        return writer.close(skipped, rejected)


def _rejection(variant: PlannedVariant, decision: GateDecision) -> dict:
    return {
        "key": variant.key,
        "source_key": variant.source_key,
        "score": round(float(decision.score), 4),
        "reference": decision.reference,  # "identity" (training split) or "source" (test splits: no label used)
        "rank1": decision.rank1,  # None when not tested (a test split's variant)
        "outside_changed": round(float(decision.outside_changed), 4),
        "reason": decision.reason,
    }


def _batches(ctx: BuildContext, spec: ShardSpec, gen: Generation, skipped: list[Skipped]) -> Iterator[list]:
    """(request, variant, mask PNG) triples in batches of `batch_size`, in plan order; bad sources are skipped and
    listed. A source is loaded, and its mask encoded, once for all its variants (they are consecutive)."""
    opts = ctx.opts
    batch: list = []
    source_key, source = None, None
    donors: dict[str, tuple | None] = {}  # per shard: a donor serves many variants
    for variant in spec.variants:
        if variant.source_key != source_key:
            source_key = variant.source_key
            source = _load_source(ctx, gen.sources[source_key], skipped)
        if source is None:
            continue
        image, garment_map, mask, mask_png = source
        donor_image = donor_map = None
        if variant.appearance_key:
            if variant.appearance_key not in donors:
                donors[variant.appearance_key] = _load_donor(ctx, gen.donors[variant.appearance_key], skipped)
            if donors[variant.appearance_key] is None:
                continue
            donor_image, donor_map = donors[variant.appearance_key]
        request = GenerationRequest(
            key=variant.key,
            image=image,
            garment_map=garment_map,
            mask=mask,
            prompt=variant.prompt,
            negative_prompt=variant.negative_prompt,
            target_text=variant.target_text,
            seed=variant.seed,
            donor_image=donor_image,
            donor_garment_map=donor_map,
            source_path=gen.sources[source_key].path,
            target_clothes_id=variant.target_clothes_id,
        )
        batch.append((request, variant, mask_png))
        if len(batch) == opts.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _load_source(ctx: BuildContext, record: Record, skipped: list[Skipped]) -> tuple | None:
    """(image, garment map, mask, mask PNG bytes) of a source, or None (listed in `skipped`)."""
    image = load_image(ctx.root, record)
    if isinstance(image, Skipped):  # unreadable now though it parsed: list it, keep going
        skipped.append(image)
        return None
    garment_map = load_garment_map(ctx.masks, record.key)
    mask = clothing_mask(garment_map, ctx.opts.mask_classes, ctx.opts.dilation)
    if not mask.any():
        skipped.append(Skipped(record.path, "empty mask: no clothing found"))
        return None
    return image, garment_map, mask, encode_image(Image.fromarray(mask.astype(np.uint8) * 255), "png")


def _load_donor(ctx: BuildContext, record: Record, skipped: list[Skipped]) -> tuple | None:
    """(image, garment map) of an appearance provider, or None (listed: its variants are left out)."""
    image = load_image(ctx.root, record)
    if isinstance(image, Skipped):
        skipped.append(Skipped(image.path, f"donor: {image.reason}"))
        return None
    return image, load_garment_map(ctx.masks, record.key)
