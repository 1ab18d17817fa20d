"""`dlcr-data import-release`: DLCR's own generated images (the Hub dataset `ihaveamoose/DLCR`) as a build.

`import_release()` reads like `build()`: numbered steps. The release's strips (one PNG per original training image,
its variants side by side, a `.txt` of one outfit text per variant; `release_read.py`) become the same WebDataset
shards, sample schema, manifest entry and card as a build: `generator` = "dlcr-release", the `.txt` line as prompt
and target text, `source_key` = the key the dataset's loader gives the original image (so DLCR pairing by source
works). The release ships no clothing masks, so samples have no `mask.png` member and the card declares none.

Shards are the work units, as in the build (`shards.run_shards`): complete ones are kept (sha256-checked), the rest
are split across processes with `PartialState`; their content is fixed by the sorted strip list, so the bytes are
the same whatever the number of processes. The out folder is claimed (`context.OutFolder`) once the release is open
and its strips found, so a wrong --release leaves nothing behind; the manifest entry and card are written by the
build's own `finish` pieces.

A release counts per strip where a build counts per source image, so its recorded options and entry say so:
`variants_per_strip` and `strip_limit` (the `--variants` and `--limit` options), `outfit_texts` (distinct texts)
and `release.strips_by_variant_count`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dlcr_data import loaders
from dlcr_data.build.context import OutFolder
from dlcr_data.build.finish import publish, published_config, refuse_empty, shard_rows, totals
from dlcr_data.build.options import check_output_options
from dlcr_data.build.plan import PlannedVariant
from dlcr_data.build.release_read import (
    Originals,
    ReleaseFiles,
    Strip,
    decode_strip,
    find_dataset_folder,
    original_path,
    outfit_text,
    release_layout,
    scan_strip,
    split_archive_command,
)
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
)
from dlcr_data.errors import UserError
from dlcr_data.files import write_json_atomic
from dlcr_data.progress import Reporter, process_state
from dlcr_data.records import Skipped

GENERATOR = "dlcr-release"
RELEASE_REPO = "ihaveamoose/DLCR"
RELEASE_LICENCE = "not stated by the release; the source datasets' licences apply"
_RUNTIME_ONLY = ("out", "overwrite")  # a rerun may change them: not a byte of output depends on them
# Recorded under names that say what they count: a build's `variants` and `limit` count per source image.
_RECORDED_AS = {"variants": "variants_per_strip", "limit": "strip_limit"}


@dataclass(frozen=True)
class ReleaseOptions:
    """Every `import-release` option and its default (the CLI reads its defaults from here)."""

    dataset: str
    release: Path  # the unpacked release folder (or one joined .zip)
    out: Path
    root: str | None = None  # the original dataset: its records give the keys, its images the variants' aspect
    variants: int | None = None  # variants per strip; None: inferred from the strip's aspect ratio
    aspect: float | None = None  # a variant's width / height for the inference; None: the original's (--root)
    aspect_tolerance: float = 0.1  # relative: how far a strip's implied variant aspect may be from `aspect`
    limit: int | None = None  # the first N strips (sorted by path): smoke runs
    image_format: str = "png"
    shard_samples: int = 1000
    overwrite: bool = False

    def resolved(self) -> ReleaseOptions:
        """Validated options, paths as given (the fingerprint records them)."""
        spec = loaders.get(self.dataset)  # an unknown name: the one-line error listing the datasets
        opts = replace(self, dataset=spec.name, release=Path(self.release).expanduser())
        opts = replace(opts, root=str(opts.root) if opts.root is not None else None)
        if release_layout(spec.name).needs_root and opts.root is None:
            raise UserError(f"{spec.name}: the originals' labels do not follow from file names alone; pass --root")
        if opts.variants is None and opts.aspect is None and opts.root is None:
            raise UserError("how many variants a strip holds: pass --variants N, --aspect W/H or --root RAW")
        check_output_options(opts.image_format, {"--variants": opts.variants, "--shard-samples": opts.shard_samples})
        if (opts.aspect is not None and opts.aspect <= 0) or not 0 < opts.aspect_tolerance < 1:
            raise UserError("--aspect must be positive and --aspect-tolerance in (0, 1)")
        if not opts.release.exists():
            raise UserError(f"--release {opts.release} does not exist; {expected_tree(spec.name)}")
        return opts

    def to_dict(self) -> dict:
        return {**asdict(self), "release": str(self.release), "out": str(self.out)}

    def fingerprint(self) -> dict:
        """What determines the output bytes (compared on rerun, recorded in the manifest), with what every build
        config states: the generator, the splits and that there are no masks (the card declares none). `variants`
        and `limit` are recorded as `variants_per_strip` and `strip_limit`."""
        d = {_RECORDED_AS.get(k, k): v for k, v in self.to_dict().items() if k not in _RUNTIME_ONLY}
        return {**d, "generator": GENERATOR, "splits": ["train"], "masks": False}


def expected_tree(dataset: str) -> str:
    """The release tree `import-release` reads, on one line."""
    spec, layout = loaders.get(dataset), release_layout(dataset)
    return (
        f"expected DIR/[{spec.dirname}/]{layout.example}: one strip per training image (its variants side by side, "
        f"named X.png or X.jpg.png after the original X.jpg) and beside it X.txt, one 'top| bottom| shoes' line "
        f"per variant (the original's layout: see `dlcr-data datasets`)"
    )


def import_release(options: ReleaseOptions, reporter: Reporter | None = None) -> dict:
    """Import one dataset's strips from the release into `options.out`; returns its manifest entry."""
    # 1. resolve the options, refuse a split archive, load the originals (--root)
    opts = options.resolved()
    command = split_archive_command(opts.release)
    if command is not None and opts.release.is_file():
        raise UserError(f"{opts.release} is part of a split zip archive, which Python cannot read; run: {command}")
    ctx = _Import.start(opts, reporter or Reporter())
    files = ReleaseFiles(opts.release)
    try:
        # 2. find the strips: the dataset's training folders inside the release, sorted by path
        paths = _find_strips(opts, files)
        # 3. claim the out folder: only now, so a wrong --release (a one-line error above) leaves it unclaimed
        ctx.folder.claim(opts.fingerprint(), opts.overwrite)
        # 4. scan: each strip's original, .txt and size (header only); bad strips are skipped with the reason
        strips = _scan(ctx, files, paths)
        # 5. plan: one sample per variant, cut into shards (all variants of an original stay in one shard)
        plan, where = _plan(strips)
        specs = assign_shards(plan, opts.shard_samples)
        # 6. the shards: complete ones are kept, the rest are split across processes
        results = run_shards(
            ctx.folder, ctx.reporter, specs, "import", lambda: _shard_writer(ctx, files, strips, where)
        )
    except BaseException:
        ctx.folder.remove_own_temps()  # harmless before the claim: only this process's temp files
        raise
    finally:
        files.close()
    # 7. the manifest entry, then the card (or a one-line error when no sample was imported)
    return _finish(ctx, strips, plan, results)


@dataclass
class _Import:
    """What the steps share (a build's `BuildContext`, for an import): the options, the dataset, the out folder, the
    originals (None without --root), the reporter and what was skipped."""

    opts: ReleaseOptions
    spec: loaders.SourceDataset
    folder: OutFolder
    loaded: loaders.Loaded | None
    reporter: Reporter
    skipped: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, opts: ReleaseOptions, reporter: Reporter) -> _Import:
        spec = loaders.get(opts.dataset)
        loaded = spec.load(opts.root) if opts.root is not None else None
        return cls(opts, spec, OutFolder(Path(opts.out), opts.dataset, process_state()), loaded, reporter)


def _find_strips(opts: ReleaseOptions, files: ReleaseFiles) -> list[tuple[str, str]]:
    """(strip path in the release, original's path without extension) of every strip, sorted; `limit` applied."""
    spec, layout = loaders.get(opts.dataset), release_layout(opts.dataset)
    prefix = find_dataset_folder(files.names, layout, {spec.name, spec.dirname.lower()})
    if prefix is None:
        command = split_archive_command(opts.release)
        if command is not None:
            raise UserError(f"{opts.release} holds a split zip archive, which Python cannot read; run: {command}")
        zips = [n for n in files.names if n.lower().endswith(".zip") and "/" not in n]
        if zips:
            raise UserError(f"{opts.release} holds no strips but {', '.join(zips)}: pass --release that .zip file")
        raise UserError(f"no {spec.name} strips in {opts.release}; {expected_tree(spec.name)}")
    folders = tuple(f"{prefix}{f}/" for f in layout.folders)
    paths = [n for n in files.names if n.lower().endswith(".png") and n.startswith(folders)]
    paths = paths if opts.limit is None else paths[: opts.limit]
    return [(p, original_path(p[len(prefix) :])) for p in paths]


def _scan(ctx: _Import, files: ReleaseFiles, paths: list[tuple[str, str]]) -> list[Strip]:
    """The strips that pass every check, in path order; the others go to `ctx.skipped`. Every process scans (a
    header and a .txt per strip) and gets the same list."""
    opts = ctx.opts
    originals, names = Originals(ctx.spec, ctx.loaded), set(files.names)
    advance = ctx.reporter.stage("scan", len(paths))
    strips: list[Strip] = []
    first: dict[str, str] = {}  # original -> its first strip: `X.png` and `X.jpg.png` are the same original's
    for path, original in paths:
        if original in first:
            item: Strip | Skipped = Skipped(path, f"duplicate: {first[original]} is a strip of the same original")
        else:
            first[original] = path
            item = scan_strip(
                files, names, path, original, originals, opts.variants, opts.aspect, opts.aspect_tolerance
            )
        if isinstance(item, Skipped):
            ctx.skipped.append({"path": item.path, "reason": item.reason, "stage": "scan"})
        else:
            strips.append(item)
        advance(1)
    ctx.reporter.done("scan")
    return strips


def _plan(strips: list[Strip]) -> tuple[list[PlannedVariant], dict[str, tuple[int, int]]]:
    """One planned sample per variant, and where its pixels are: sample key -> (strip index, position in strip).

    Variants are numbered per original, in strip order: 0..N-1 for an image; a video tracklet's frames continue
    the count, so (source_key, variant) and the sample key stay unique. Only what the release states is filled
    in: no target outfit id, seed, sampling or cluster (""/-1, as generators that have none write them)."""
    plan: list[PlannedVariant] = []
    where: dict[str, tuple[int, int]] = {}
    count: Counter[str] = Counter()
    for i, strip in enumerate(strips):
        record = strip.record
        for k, line in enumerate(strip.lines):
            variant = count[record.key] + k
            key = f"{record.key}_v{variant}"
            plan.append(
                PlannedVariant(
                    key=key,
                    source_key=record.key,
                    split=record.split,
                    variant=variant,
                    source_clothes_id=record.clothes_id,
                    target_clothes_id="",
                    target_text=outfit_text(line),
                    prompt=line,  # the release's text as written; DLCR's diffusion prompt is not published
                    negative_prompt="",
                    seed=-1,
                    sampling="",
                )
            )
            where[key] = (i, k)
        count[record.key] += strip.variants
    return plan, where


def _shard_writer(
    ctx: _Import, files: ReleaseFiles, strips: list[Strip], where: dict[str, tuple[int, int]]
) -> WriteShard:
    """What writes one shard (`run_shards`), advancing the progress by its variants."""

    def write(spec: ShardSpec, advance: Callable[[int], None]) -> ShardResult:
        result = _write_shard(ctx, files, spec, strips, where)
        advance(len(spec.variants))
        return result

    return write


def _write_shard(
    ctx: _Import, files: ReleaseFiles, spec: ShardSpec, strips: list[Strip], where: dict[str, tuple[int, int]]
) -> ShardResult:
    """One shard: each strip decoded once and cut into its variants; a strip that does not decode is skipped."""
    opts = ctx.opts
    skipped: list[Skipped] = []
    current, images = -1, None
    with ShardWriter(ctx.folder.out, f"{opts.dataset}/{spec.name}", spec.split) as writer:
        for variant in spec.variants:
            i, k = where[variant.key]
            strip = strips[i]
            if i != current:
                current, images = i, _decode(files, strip)
                if isinstance(images, str):
                    skipped.append(Skipped(strip.path, images))
            if isinstance(images, str):
                continue
            image = images[k]
            meta = variant_meta(opts.dataset, variant, strip.record, image, generator=GENERATOR, model=None)
            data = encode_image(image, opts.image_format)
            writer.write(encode_sample(variant.key, data, None, meta.to_dict(), opts.image_format))
        return writer.close(skipped)


def _decode(files: ReleaseFiles, strip: Strip) -> list | str:
    """The strip's variants, or the reason it is skipped (`ReleaseFiles.read` raises OSError for every read
    failure: corrupt zip data included, named by its cause)."""
    try:
        data = files.read(strip.path)
    except OSError as err:
        return f"image: unreadable strip ({type(err.__cause__ or err).__name__})"
    return decode_strip(data, strip)


def _finish(ctx: _Import, strips: list[Strip], plan: list[PlannedVariant], results: list[ShardResult]) -> dict:
    """Main process: the manifest entry and the card. No sample at all: a one-line error, no entry, no shards."""
    opts, folder = ctx.opts, ctx.folder
    skipped = ctx.skipped + [
        {"path": s.path, "reason": s.reason, "stage": "import"} for r in results for s in r.skipped
    ]
    if folder.main():
        write_json_atomic(folder.work / "skipped.json", skipped)
    if sum(r.samples for r in results) == 0:
        first = f"; first: {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise refuse_empty(
            folder,
            results,
            f"no sample imported from {opts.release}: {len(skipped)} strips skipped{first} "
            f"(all: {folder.work / 'skipped.json'})",
        )
    entry = {
        "complete": True,
        "config": published_config(opts.fingerprint()),  # no local path: the release by its name, no root
        "models": {},
        "outfit_texts": len({v.target_text for v in plan}),  # distinct texts (a build's `outfits`: outfits described)
        "release": {
            "repo": RELEASE_REPO,
            "url": f"https://huggingface.co/datasets/{RELEASE_REPO}",
            "licence": RELEASE_LICENCE,
            "strips": len(strips),
            "strips_by_variant_count": {str(n): c for n, c in sorted(Counter(s.variants for s in strips).items())},
        },
        "shards": shard_rows(results),
        "totals": totals(results),
        "skipped": skipped,
    }
    publish(folder, entry, ctx.loaded.root if ctx.loaded is not None else None)
    return entry


__all__ = ["GENERATOR", "RELEASE_LICENCE", "RELEASE_REPO", "ReleaseOptions", "expected_tree", "import_release"]
