"""`dlcr-data build`: parse → describe → (body shape) → plan → generate → finish, under accelerate, resumable.

`build()` reads top to bottom, like a diffusers pipeline's `__call__`: each numbered step is one stage module's
`run`. Each stage caches its results under `OUT/work/<dataset>/`, so a rerun continues where it stopped. Work is
split across processes with `PartialState` (shards are the work units of generation); every choice is derived
from seeds and sorted inputs, so the output is byte-identical whatever the number of processes. The manifest is
written last, by the main process, once every shard is complete.
"""

from __future__ import annotations

from dlcr_data.build import describe, finish, parse, plan
from dlcr_data.build.annotate import body_shape
from dlcr_data.build.choose import check_models, choose_backends
from dlcr_data.build.context import BuildContext, unique
from dlcr_data.build.generate import stage as generate
from dlcr_data.build.options import BuildOptions
from dlcr_data.progress import Reporter


def build(options: BuildOptions, reporter: Reporter | None = None) -> dict:
    """Run every stage for one dataset into `options.out`; returns this dataset's manifest entry."""
    # 1. resolve the options, choose the backends, load the source, check every model, claim the out folder
    opts = options.resolved()
    backends = choose_backends(opts)
    ctx = BuildContext.start(opts, backends, reporter or Reporter())
    ctx.models = check_models(opts, backends)
    ctx.claim_out_folder()
    try:
        sources, pool = ctx.sources(), ctx.pool()  # the images to expand (--limit); every training image
        # 2. parse: a garment map per source (and per training image when a stage reads them); failures drop out
        parsed = parse.run(ctx, unique(sources + pool) if ctx.pool_is_parsed() else sources)
        sources = [r for r in sources if r.key in parsed]
        pool = [r for r in pool if r.key in parsed] if ctx.pool_is_parsed() else pool
        # 3. describe: one "top | bottom | shoes" text per training outfit
        outfit_texts = describe.run(ctx, pool)
        # 4. body shape (optional): SHAPY word scores per source image
        shapes = body_shape.run(ctx, sources) if opts.body_shape else None
        # 5. plan: a target outfit, a random seed and (for donor-based generators) a donor per variant
        planned = plan.run(ctx, sources, pool, outfit_texts)
        # 6. generate (and gate) every variant into shards
        results = generate.run(ctx, planned, sources, pool, shapes)
    except BaseException:
        ctx.remove_own_temps()
        raise
    # 7. the manifest entry, then the dataset card
    return finish.run(ctx, results, len(outfit_texts), shapes)


__all__ = ["BuildOptions", "build"]
