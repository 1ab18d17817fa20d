"""`dlcr-data build`: parse → describe → plan → generate → shards, under accelerate, resumable.

Read top to bottom, like a diffusers pipeline. Each stage caches its results under `OUT/work/<dataset>/`, so a
rerun continues where it stopped. Work is split across processes with `PartialState` (shards are the work units
of generation); every choice is derived from seeds and sorted inputs, so the output is byte-identical whatever the
number of processes. The manifest is written last, by the main process, once every shard is complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.plan import DEFAULT_PROMPT_TEMPLATE, PlannedVariant, plan_variants, read_plan, write_plan
from dlcr_data.build.shards import (
    ShardResult,
    ShardSpec,
    ShardWriter,
    assign_shards,
    encode_image,
    encode_sample,
    is_complete,
)
from dlcr_data.errors import UserError
from dlcr_data.files import remove_stale_temps, write_json_atomic
from dlcr_data.manifest import drop_entry, read_json, write_entry
from dlcr_data.progress import Reporter, process_state
from dlcr_data.records import Record, Skipped
from dlcr_data.vocab.garments import DEFAULT_MASK_CLASSES, check_classes

if TYPE_CHECKING:  # imported lazily at run time: the CLI should not pay for torch before it needs it
    from dlcr_data.build.annotate.gate import IdentityGate
    from dlcr_data.build.generate import Generator

GEOMETRY = "geometry"  # --body-shape without a CLIP model: ratios measured on the parsing masks
# Options that do not change a single output byte, so a rerun may change them.
_RUNTIME_ONLY = ("out", "overwrite", "batch_size", "compile")


@dataclass(frozen=True)
class BuildOptions:
    dataset: str
    out: Path
    root: str | None = None
    variants: int = 10
    splits: tuple[str, ...] = ("train",)
    limit: int | None = None  # first N source images per split (smoke runs)
    seed: int = 0
    # parse
    parser: str = "auto"
    parser_model: str | None = None
    mask_classes: tuple[str, ...] = DEFAULT_MASK_CLASSES
    dilation: int = 0
    # describe
    describer: str = "auto"
    vlm_model: str | None = None
    llm_model: str | None = None
    captions_per_outfit: int | None = None
    # plan + generate
    generator: str = "auto"
    model: str | None = None
    steps: int = 50
    guidance: float = 7.5
    resolution: tuple[int, int] = (256, 768)  # W x H, DLCR's
    pad: bool = False
    negative_prompt: str = ""
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    sampler: str = "random"  # "random" (DLCR) | "similarity-diversity" (ClonedPerson)
    similar_fraction: float = 0.5  # similarity-diversity: share of targets from the source outfit's own cluster
    # annotate + filter
    body_shape: str | None = None  # "geometry" or a CLIP model (HF id / folder): CLIP3DReID body-shape scores
    identity_gate: str | None = None  # a re-ID checkpoint or transformers backbone: drop variants that lose the id
    gate_threshold: float | None = None  # None: the gate's default
    # shards + runtime
    image_format: str = "png"
    shard_samples: int = 1000
    batch_size: int = 8
    compile: bool = False
    overwrite: bool = False

    def resolved(self) -> BuildOptions:
        """Concrete backends for "auto" and validated values."""
        auto = loaders.get(self.dataset).default_backends  # "auto": what the dataset ships decides
        opts = replace(
            self,
            dataset=self.dataset.lower(),
            root=str(self.root) if self.root is not None else None,  # recorded in JSON: a path as text
            parser=auto["parser"] if self.parser == "auto" else self.parser,
            describer=auto["describer"] if self.describer == "auto" else self.describer,
            generator=auto["generator"] if self.generator == "auto" else self.generator,
            mask_classes=check_classes(self.mask_classes),
        )
        if opts.variants < 1 or opts.shard_samples < 1 or opts.batch_size < 1:
            raise UserError("--variants, --shard-samples and --batch-size must be at least 1")
        if opts.image_format not in ("png", "jpg"):
            raise UserError(f"--image-format must be png or jpg, not {opts.image_format!r}")
        from dlcr_data.build.plan import SAMPLERS

        if opts.sampler not in SAMPLERS:
            raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, not {opts.sampler!r}")
        if opts.identity_gate is not None:  # a training run stands for its newest checkpoint: pin which one
            from dlcr_data.build.annotate.gate import checkpoint_folder

            folder = checkpoint_folder(opts.identity_gate)
            opts = replace(opts, identity_gate=str(folder) if folder is not None else opts.identity_gate)
        if opts.gate_threshold is not None and (opts.identity_gate is None or not -1.0 <= opts.gate_threshold <= 1.0):
            raise UserError("--gate-threshold needs --identity-gate and a cosine in [-1, 1]")
        if not 0.0 <= opts.similar_fraction <= 1.0:
            raise UserError(f"--similar-fraction must be in [0, 1], not {opts.similar_fraction}")
        return opts

    def fingerprint(self) -> dict:
        """Everything that determines the output bytes (compared on rerun)."""
        d = asdict(self)
        for key in _RUNTIME_ONLY:
            d.pop(key)
        d["splits"], d["mask_classes"], d["resolution"] = (
            list(self.splits),
            list(self.mask_classes),
            list(self.resolution),
        )
        return d


@dataclass
class BuildContext:
    """What every stage needs: options, the process state, paths and the loaded source."""

    opts: BuildOptions
    state: object  # accelerate.PartialState
    spec: loaders.SourceDataset
    loaded: loaders.Loaded
    reporter: Reporter
    skipped: list[dict] = field(default_factory=list)
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # option -> {"id", "revision"}
    clusters: dict | None = None  # similarity-diversity: the outfit clustering's figures, for the manifest

    @property
    def out(self) -> Path:
        return Path(self.opts.out)

    @property
    def work(self) -> Path:
        return self.out / "work" / self.opts.dataset

    @property
    def root(self) -> Path:
        return self.loaded.root

    def main(self) -> bool:
        return self.state.is_main_process


def build(options: BuildOptions, reporter: Reporter | None = None) -> dict:
    """Run every stage for one dataset into `options.out`; returns this dataset's manifest entry."""
    opts = options.resolved()
    state = process_state()
    spec = loaders.get(opts.dataset)
    loaded = spec.load(opts.root)
    _check_splits(spec, opts.splits)
    ctx = BuildContext(opts, state, spec, loaded, reporter or Reporter())
    ctx.skipped = [{"path": s.path, "reason": s.reason, "stage": "load"} for s in loaded.skipped]

    ctx.models = _check_models(opts)
    _claim_out_folder(ctx)
    try:
        sources = _sources(ctx)
        pool_records = _limited(loaded.splits.get("train", []), opts.limit)
        parsed = run_parse(ctx, _unique(sources + pool_records))
        sources = [r for r in sources if r.key in parsed]
        pool_records = [r for r in pool_records if r.key in parsed]
        outfit_texts = run_describe(ctx, pool_records)
        shapes = run_body_shape(ctx, sources) if opts.body_shape else None
        plan = run_plan(ctx, sources, pool_records, outfit_texts)
        results = run_generate(ctx, plan, sources, pool_records, shapes)
    except BaseException:  # Ctrl-C can land between opening a temp file and its `with`: sweep this process's
        for folder in (ctx.work, ctx.out / opts.dataset):
            remove_stale_temps(folder, os.getpid())
        raise
    return finish(ctx, results, len(outfit_texts), shapes)


# -- setup ------------------------------------------------------------------------------------------------------
def _check_splits(spec: loaders.SourceDataset, splits: tuple[str, ...]) -> None:
    unknown = [s for s in splits if s not in spec.splits]
    if unknown:
        raise UserError(f"{spec.name} has no split {', '.join(unknown)}; choose from {', '.join(spec.splits)}")


def model_refs(opts: BuildOptions) -> dict[str, str]:
    """The model each model-based stage will load (option value or the backend's default), by CLI option."""
    refs = {}
    if opts.parser == "segformer":
        from dlcr_data.build.parse import DEFAULT_SEGFORMER_MODEL

        refs["--parser-model"] = opts.parser_model or DEFAULT_SEGFORMER_MODEL
    if opts.describer == "vlm":
        from dlcr_data.build.describe import DEFAULT_LLM, DEFAULT_VLM

        refs["--vlm-model"] = opts.vlm_model or DEFAULT_VLM
        refs["--llm-model"] = opts.llm_model or DEFAULT_LLM
    if opts.generator == "diffusion":
        from dlcr_data.build.generate.diffusion import DEFAULT_INPAINT_MODEL

        refs["--model"] = opts.model or DEFAULT_INPAINT_MODEL
    if opts.body_shape not in (None, GEOMETRY):
        refs["--body-shape"] = opts.body_shape
    if opts.identity_gate is not None:
        refs["--identity-gate"] = opts.identity_gate
    return refs


def _check_models(opts: BuildOptions) -> dict[str, dict[str, str]]:
    """Every model reference resolves before any work starts; returns id and revision per model option."""
    from dlcr_data.pretrained import check_ref

    return {
        option.removeprefix("--"): {"id": ref, "revision": check_ref(ref, option)}
        for option, ref in model_refs(opts).items()
    }


def _claim_out_folder(ctx: BuildContext) -> None:
    """A rerun must use the same options (it continues); other options need --overwrite (it starts over)."""
    config_path = ctx.work / "config.json"
    wanted = ctx.opts.fingerprint()
    previous = read_json(config_path)  # read by every process before anyone writes
    if previous is not None and previous != wanted and not ctx.opts.overwrite:
        if wanted.keys() - previous.keys():  # options this build's version did not have: its samples lack fields
            raise UserError(
                f"{ctx.out} holds a {ctx.opts.dataset} build made by an older dlcr-data (its samples lack newer "
                "json fields); pass --overwrite to rebuild it, or use another --out"
            )
        changed = sorted(k for k in wanted.keys() | previous.keys() if wanted.get(k) != previous.get(k))
        raise UserError(
            f"{ctx.out} holds a {ctx.opts.dataset} build made with other options ({', '.join(changed)}); "
            f"rerun with the same options to continue it, pass --overwrite to replace it, or use another --out"
        )
    ctx.state.wait_for_everyone()
    if ctx.main():
        if ctx.opts.overwrite and previous is not None and previous != wanted:
            shutil.rmtree(ctx.work, ignore_errors=True)
            shutil.rmtree(ctx.out / ctx.opts.dataset, ignore_errors=True)
            drop_entry(ctx.out, ctx.opts.dataset)
        write_json_atomic(config_path, wanted)
        for folder in (ctx.work, ctx.out / ctx.opts.dataset):  # partial files of a killed run: redone below
            remove_stale_temps(folder)
    ctx.state.wait_for_everyone()


def _sources(ctx: BuildContext) -> list[Record]:
    return [r for split in ctx.opts.splits for r in _limited(ctx.loaded[split], ctx.opts.limit)]


def _limited(records: list[Record], limit: int | None) -> list[Record]:
    return records if limit is None else records[:limit]


def _unique(records: list[Record]) -> list[Record]:
    return list({r.key: r for r in records}.values())


# -- stage 1: parse ---------------------------------------------------------------------------------------------
def run_parse(ctx: BuildContext, records: list[Record]) -> set[str]:
    """Garment maps for every record (split across processes); returns the keys that have one."""
    from accelerate.utils import gather_object

    from dlcr_data.build.parse import make_parser, map_path, parse_records

    opts = ctx.opts
    maps_dir = ctx.work / "masks"
    parser = make_parser(opts.parser, opts.parser_model, dataset=opts.dataset, batch_size=opts.batch_size)
    with ctx.state.split_between_processes(records) as mine:
        advance = ctx.reporter.stage("parse", len(records))
        skipped = parse_records(mine, ctx.root, parser, maps_dir, batch_size=opts.batch_size, progress=advance)
    del parser
    all_skipped = gather_object([(s.path, s.reason) for s in skipped])
    ctx.skipped += [{"path": p, "reason": r, "stage": "parse"} for p, r in sorted(set(all_skipped))]
    ctx.reporter.done("parse")
    ctx.state.wait_for_everyone()
    return {r.key for r in records if map_path(maps_dir, r.key).exists()}


# -- stage 2: describe ------------------------------------------------------------------------------------------
def run_describe(ctx: BuildContext, records: list[Record]) -> dict[str, str]:
    """One `top | bottom | shoes` text per training outfit (split across processes); clothes_id -> text."""
    from dlcr_data.build.describe import describe_outfits, group_outfits, make_describer, read_outfits
    from dlcr_data.build.parse import load_garment_map

    opts = ctx.opts
    out_path, cache = ctx.work / "outfits.jsonl", ctx.work / "outfits"
    describer = make_describer(
        opts.describer,
        dataset=opts.dataset,
        root=ctx.root,
        vlm=opts.vlm_model,
        llm=opts.llm_model,
        batch_size=opts.batch_size,
        captions_per_outfit=opts.captions_per_outfit,
    )
    outfits = group_outfits(records, ctx.root, lambda key: load_garment_map(ctx.work / "masks", key))
    advance = ctx.reporter.stage("describe", len(outfits))
    with ctx.state.split_between_processes(outfits) as mine:
        describe_outfits(mine, describer, None, cache_dir=cache, progress=advance)
    ctx.state.wait_for_everyone()
    if ctx.main():  # every outfit is cached now: this only merges
        describe_outfits(outfits, describer, out_path, cache_dir=cache)
    del describer
    ctx.reporter.done("describe")
    ctx.state.wait_for_everyone()
    texts = {cid: o.text for cid, o in read_outfits(out_path).items()}
    if not texts:
        raise UserError(f"{opts.dataset}: no training outfit could be described, so there are no target outfits")
    return texts


# -- stage 2b: body shape (optional) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BodyShapes:
    """CLIP3DReID body-shape scores of the source images: key -> scores over `body_shape.BODY_SHAPE_WORDS`."""

    method: str
    vocabulary: str
    scores: dict[str, list[float]]
    top: dict[str, str] = field(default_factory=dict)  # key -> its top words, comma-separated (one per source)

    def __post_init__(self) -> None:
        from dlcr_data.build.annotate.body_shape import top_words

        self.top.update({key: ", ".join(top_words(np.asarray(row))) for key, row in self.scores.items()})


def run_body_shape(ctx: BuildContext, records: list[Record]) -> BodyShapes:
    """Score every source image (split across processes); cached in `work/<dataset>/body_shape.json`."""
    from accelerate.utils import gather_object

    from dlcr_data.build.annotate.body_shape import VOCABULARY, make_shape_scorer
    from dlcr_data.build.parse import load_garment_map, load_image

    opts = ctx.opts
    path = ctx.work / "body_shape.json"
    cached = read_json(path)
    if cached is None:
        scorer = make_shape_scorer(None if opts.body_shape == GEOMETRY else opts.body_shape)
        advance = ctx.reporter.stage("body shape", len(records))
        mine_scores: list[tuple[str, list[float]]] = []
        with ctx.state.split_between_processes(records) as mine:
            for i in range(0, len(mine), opts.batch_size):
                batch = mine[i : i + opts.batch_size]
                advance(len(batch))
                loaded = [(r, image) for r in batch if not isinstance(image := load_image(ctx.root, r), Skipped)]
                if not loaded:  # unreadable now though they parsed: generation lists them as skipped
                    continue
                chunk, images = [r for r, _ in loaded], [image for _, image in loaded]
                maps = [load_garment_map(ctx.work / "masks", r.key) for r in chunk]
                rows = scorer.score(images, maps).tolist()
                mine_scores += [(r.key, [round(x, 4) for x in row]) for r, row in zip(chunk, rows, strict=True)]
        all_scores = dict(sorted(gather_object(mine_scores)))
        cached = {"method": scorer.method, "vocabulary": VOCABULARY, "scores": all_scores}
        del scorer
        if ctx.main():
            write_json_atomic(path, cached)
        ctx.reporter.done("body shape")
    ctx.state.wait_for_everyone()
    return BodyShapes(cached["method"], cached["vocabulary"], cached["scores"])


# -- stage 3: plan ----------------------------------------------------------------------------------------------
def run_plan(
    ctx: BuildContext, records: list[Record], pool: list[Record], outfit_texts: dict[str, str]
) -> list[PlannedVariant]:
    """Targets, seeds and (for donor-based generators) appearance providers for every (image, variant); computed
    identically by every process, written by main."""
    from dlcr_data.build.generate import needs_donor

    opts = ctx.opts
    donors = None
    if needs_donor(opts.generator):
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
        return load_garment_map(ctx.work / "masks", record.key)

    described = [r for r in pool if r.clothes_id in outfit_texts]  # the outfits a target can be
    clusters, embeddings = outfit_clusters_from_records(described, load_pixels, load_map, sources=records)
    return {"clusters": clusters, "source_embeddings": embeddings}


# -- stage 4+5: generate into shards ----------------------------------------------------------------------------
@dataclass
class Generation:
    """What generating a shard needs besides the plan: the generator, records by key and the optional extras."""

    generator: Generator
    sources: dict[str, Record]
    donors: dict[str, Record]
    shapes: BodyShapes | None = None
    gate: IdentityGate | None = None  # fitted on the sources


def run_generate(
    ctx: BuildContext,
    plan: list[PlannedVariant],
    sources: list[Record],
    pool: list[Record],
    shapes: BodyShapes | None = None,
) -> list[ShardResult]:
    """Shards are the work units: complete ones are kept, the rest are split across processes."""
    opts = ctx.opts
    specs = assign_shards(plan, opts.shard_samples)
    done = {spec.name: r for spec in specs if (r := _completed(ctx, spec)) is not None}
    todo = [spec for spec in specs if spec.name not in done]
    ctx.state.wait_for_everyone()  # every process decided `todo` before anyone writes a shard
    if todo:
        gen = Generation(_make_generator(opts), {r.key: r for r in sources}, {r.key: r for r in pool}, shapes)
        if opts.identity_gate:
            gen.gate = _fit_gate(ctx, sources)
        advance = ctx.reporter.stage("generate", sum(len(s.variants) for s in todo))
        with ctx.state.split_between_processes(todo) as mine:
            for spec in mine:
                result = generate_shard(ctx, spec, gen, advance)
                write_json_atomic(_record_path(ctx, spec), result.to_dict())
        del gen
    ctx.reporter.done("generate")
    ctx.state.wait_for_everyone()
    results = [_completed(ctx, spec, check_sha=False) for spec in specs]
    missing = [spec.name for spec, r in zip(specs, results, strict=True) if r is None]
    if missing:
        raise RuntimeError(f"shards not written by any process: {missing}")
    return results


def _make_generator(opts: BuildOptions):
    from dlcr_data.build.generate import make_generator

    if opts.generator != "diffusion":
        return make_generator(opts.generator)
    options = {"resolution": opts.resolution, "pad": opts.pad, "steps": opts.steps, "guidance": opts.guidance}
    if opts.model:
        options["model"] = opts.model
    return make_generator("diffusion", compile=opts.compile, **options)


def _fit_gate(ctx: BuildContext, sources: list[Record]):
    """The identity gate with one prototype per identity from the real source images of the built splits."""
    from dlcr_data.build.annotate.gate import IdentityGate
    from dlcr_data.build.parse import load_image

    opts = ctx.opts
    options = {} if opts.gate_threshold is None else {"threshold": opts.gate_threshold}
    gate = IdentityGate(
        opts.identity_gate, batch_size=max(opts.batch_size, 64), device=str(ctx.state.device), **options
    )
    advance = ctx.reporter.stage("gate prototypes", len(sources))

    def images():  # lazily: the gate decodes and embeds a batch at a time
        for r in sources:
            image = load_image(ctx.root, r)
            yield None if isinstance(image, Skipped) else image  # unreadable: no vote (generation lists it)
            advance(1)

    gate.fit(images(), [r.pid for r in sources])
    ctx.reporter.done("gate prototypes")
    return gate


def _record_path(ctx: BuildContext, spec: ShardSpec) -> Path:
    return ctx.work / "shards" / f"{spec.name}.json"


def _completed(ctx: BuildContext, spec: ShardSpec, check_sha: bool = True) -> ShardResult | None:
    """The shard's record if the tar on disk is complete and matches it."""
    data = read_json(_record_path(ctx, spec))
    if data is None:
        return None
    result = ShardResult.from_dict(data)
    if check_sha and not is_complete(ctx.out, result):
        return None
    return result


def generate_shard(ctx: BuildContext, spec: ShardSpec, gen: Generation, advance) -> ShardResult:
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
                pids = [gen.sources[v.source_key].pid for _, v, _ in batch]
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
                meta = _sample_meta(ctx, variant, gen, image, score)
                image_bytes = encode_image(image, opts.image_format)
                writer.write(encode_sample(variant.key, image_bytes, mask_png, meta, opts.image_format))
            advance(len(batch))
        return writer.close(skipped, rejected)


def _rejection(variant: PlannedVariant, decision) -> dict:
    return {
        "key": variant.key,
        "source_key": variant.source_key,
        "score": round(float(decision.score), 4),
        "rank1": bool(decision.rank1),
        "outside_changed": round(float(decision.outside_changed), 4),
        "reason": decision.reason,
    }


def _batches(ctx: BuildContext, spec: ShardSpec, gen: Generation, skipped: list[Skipped]) -> Iterator:
    """(request, variant, mask PNG) triples in batches of `batch_size`, in plan order; bad sources are skipped and
    listed. A source is loaded, and its mask encoded, once for all its variants (they are consecutive)."""
    from dlcr_data.build.generate import GenerationRequest

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
        )
        batch.append((request, variant, mask_png))
        if len(batch) == opts.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _load_source(ctx: BuildContext, record: Record, skipped: list[Skipped]):
    """(image, garment map, mask, mask PNG bytes) of a source, or None (listed in `skipped`)."""
    from dlcr_data.build.parse import clothing_mask, load_garment_map, load_image

    image = load_image(ctx.root, record)
    if isinstance(image, Skipped):  # unreadable now though it parsed: list it, keep going
        skipped.append(image)
        return None
    garment_map = load_garment_map(ctx.work / "masks", record.key)
    mask = clothing_mask(garment_map, ctx.opts.mask_classes, ctx.opts.dilation)
    if not mask.any():
        skipped.append(Skipped(record.path, "empty mask: no clothing found"))
        return None
    return image, garment_map, mask, encode_image(Image.fromarray(mask.astype(np.uint8) * 255), "png")


def _load_donor(ctx: BuildContext, record: Record, skipped: list[Skipped]):
    """(image, garment map) of an appearance provider, or None (listed: its variants are left out)."""
    from dlcr_data.build.parse import load_garment_map, load_image

    image = load_image(ctx.root, record)
    if isinstance(image, Skipped):
        skipped.append(Skipped(image.path, f"donor: {image.reason}"))
        return None
    return image, load_garment_map(ctx.work / "masks", record.key)


def _sample_meta(
    ctx: BuildContext, v: PlannedVariant, gen: Generation, image: Image.Image, gate_score: float | None
) -> dict:
    record = gen.sources[v.source_key]
    shapes = gen.shapes
    scores = shapes.scores.get(v.source_key) if shapes is not None else None
    meta = {
        "dataset": ctx.opts.dataset,
        "split": v.split,
        "source_key": v.source_key,
        "pid": record.pid,
        "camid": record.camid,
        "source_clothes_id": v.source_clothes_id,
        "target_clothes_id": v.target_clothes_id,
        "target_text": v.target_text,
        "prompt": v.prompt,
        "negative_prompt": v.negative_prompt,
        "generator": gen.generator.name,
        "model": gen.generator.model_id or "",
        "seed": v.seed,
        "variant": v.variant,
        "width": image.width,
        "height": image.height,
        "structure_key": v.source_key,
        "structure_pid": record.pid,
        "appearance_key": v.appearance_key,
        "appearance_pid": v.appearance_pid,
        "sampling": v.sampling,
        "cluster_id": v.cluster_id,
        "body_shape_method": shapes.method if scores is not None else "",
        "body_shape_vocabulary": shapes.vocabulary if scores is not None else "",
        "body_shape_scores": scores or [],
        "body_shape_top": shapes.top[v.source_key] if scores is not None else "",
        "gate_model": gen.gate.model_id if gen.gate is not None else "",
        "gate_score": None if gate_score is None else round(float(gate_score), 4),
    }
    return meta  # `encode_sample` checks it against the schema


# -- manifest ---------------------------------------------------------------------------------------------------
def finish(ctx: BuildContext, results: list[ShardResult], num_outfits: int, shapes: BodyShapes | None) -> dict:
    """Main process: this dataset's manifest entry, merged into OUT/manifest.json (written last, atomically)."""
    opts = ctx.opts
    shard_skips = [{"path": s.path, "reason": s.reason, "stage": "generate"} for r in results for s in r.skipped]
    per_split: dict[str, dict] = {}
    for r in results:
        t = per_split.setdefault(r.split, {"shards": 0, "samples": 0, "bytes": 0})
        t["shards"], t["samples"], t["bytes"] = t["shards"] + 1, t["samples"] + r.samples, t["bytes"] + r.bytes
    entry = {
        "complete": True,
        "config": opts.fingerprint(),
        "models": ctx.models,
        "source_root": str(ctx.root),
        "outfits": num_outfits,
        "shards": [{k: v for k, v in r.to_dict().items() if k not in ("skipped", "rejected")} for r in results],
        "totals": {
            "shards": len(results),
            "samples": sum(r.samples for r in results),
            "bytes": sum(r.bytes for r in results),
            "splits": per_split,
        },
        "skipped": ctx.skipped + shard_skips,
    }
    if opts.identity_gate:
        rejected = [x for r in results for x in r.rejected]
        entry["gate"] = {
            "model": opts.identity_gate,
            "threshold": _gate_threshold(opts),
            "kept": entry["totals"]["samples"],
            "rejected": len(rejected),
            "rejections": rejected,
        }
    if ctx.clusters is not None:
        entry["outfit_clusters"] = ctx.clusters
    if shapes is not None:
        entry["body_shape"] = _body_shape_summary(ctx, shapes)
    if ctx.main():
        from dlcr_data.hub import render_card

        write_entry(ctx.out, opts.dataset, entry)
        (ctx.out / "preview.png").unlink(missing_ok=True)  # shows the first dataset's first split: redraw it
        render_card(ctx.out)  # the out folder is the dataset repo: `load_dataset(out, dataset)` works right away
    ctx.state.wait_for_everyone()
    return entry


def _gate_threshold(opts: BuildOptions) -> float:
    from dlcr_data.build.annotate.gate import DEFAULT_THRESHOLD

    return DEFAULT_THRESHOLD if opts.gate_threshold is None else opts.gate_threshold


def _body_shape_summary(ctx: BuildContext, shapes: BodyShapes) -> dict:
    """Per identity of the built splits: image count, mean score per word, top words (for the card)."""
    from dlcr_data.build.annotate.body_shape import BODY_SHAPE_WORDS, summarise_identities

    keys = sorted(shapes.scores)
    pid_of = {r.key: r.pid for split in ctx.opts.splits for r in ctx.loaded[split]}
    summary = summarise_identities([pid_of[k] for k in keys], np.array([shapes.scores[k] for k in keys]))
    return {
        "method": shapes.method,
        "vocabulary": shapes.vocabulary,
        "words": list(BODY_SHAPE_WORDS),
        "identities": {str(pid): value for pid, value in sorted(summary.items())},
    }
