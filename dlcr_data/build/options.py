"""Every build option and its default, in one place: `BuildOptions` (the CLI reads its defaults from here).

`resolved()` turns "auto" backends into concrete ones and validates; `fingerprint()` is what a rerun compares
(everything that determines the output bytes); `to_dict()` / `from_dict()` write and read a build config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from dlcr_data import loaders
from dlcr_data.errors import UserError
from dlcr_data.vocab.garments import DEFAULT_MASK_CLASSES, check_classes, read_label_map

DEFAULT_PROMPT_TEMPLATE = "a person wearing {top}, {bottom} and {shoes}"
SAMPLERS = ("random", "similarity-diversity")  # DLCR's random draw | ClonedPerson's clusters
IMAGE_FORMATS = ("png", "jpg")  # a sample's image member (`shards.encode_image`), for builds and imports alike
DEFAULT_SIMILAR_FRACTION = 0.5
GATE_OPTION = "--identity-gate"
# Options that do not change a single output byte, so a rerun may change them.
_RUNTIME_ONLY = ("out", "overwrite", "batch_size", "compile")
_TUPLES = ("splits", "mask_classes", "resolution")  # JSON gives them back as lists
_CHECKPOINT_PREFIX = "dlcr-data/reid-checkpoint/"


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
    parser_model: str | None = None  # None: the parser's `default_model`
    mask_classes: tuple[str, ...] = DEFAULT_MASK_CLASSES
    dilation: int = 0
    # A JSON file {model label: class or null} overriding the parser's label rules; resolved() replaces the path by
    # the file's content (JSON text, keys sorted), so the fingerprint records what determines the masks.
    label_map: str | None = None
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
    sampler: str = "random"  # one of SAMPLERS
    similar_fraction: float = DEFAULT_SIMILAR_FRACTION  # similarity-diversity: share of targets from the own cluster
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
            label_map=None if self.label_map is None else json.dumps(read_label_map(self.label_map), sort_keys=True),
        )
        check_output_options(
            opts.image_format,
            {"--variants": opts.variants, "--shard-samples": opts.shard_samples, "--batch-size": opts.batch_size},
        )
        if opts.sampler not in SAMPLERS:
            raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, not {opts.sampler!r}")
        if opts.identity_gate is not None:  # a training run stands for its newest checkpoint: pin which one
            folder = checkpoint_folder(opts.identity_gate)
            opts = replace(opts, identity_gate=str(folder) if folder is not None else opts.identity_gate)
        if opts.gate_threshold is not None and (opts.identity_gate is None or not -1.0 <= opts.gate_threshold <= 1.0):
            raise UserError("--gate-threshold needs --identity-gate and a cosine in [-1, 1]")
        if not 0.0 <= opts.similar_fraction <= 1.0:
            raise UserError(f"--similar-fraction must be in [0, 1], not {opts.similar_fraction}")
        return opts

    def to_dict(self) -> dict:
        """Every option, JSON-ready: tuples as lists, the out folder as text."""
        d = asdict(self)
        d["out"] = str(self.out)
        for key in _TUPLES:
            d[key] = list(d[key])
        return d

    def fingerprint(self) -> dict:
        """Everything that determines the output bytes (compared on rerun, recorded in the manifest)."""
        d = self.to_dict()
        for key in _RUNTIME_ONLY:
            d.pop(key)
        return d

    @classmethod
    def from_dict(cls, d: Mapping, **changes) -> BuildOptions:
        """The options `to_dict` or `fingerprint` wrote (lists back to tuples), with `changes` applied.

        Keys that are not options are ignored; options a dict leaves out take their defaults (a fingerprint has
        no `out`: it reads as the current folder unless `changes` give one).
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in {**d, **changes}.items() if k in known}
        values["out"] = Path(values.get("out", "."))
        for key in _TUPLES:
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def check_output_options(image_format: str, counts: dict[str, int | None]) -> None:
    """The checks every writer of shards shares (build and import-release): counts, by flag, of at least 1 (None:
    not given) and an image format of `IMAGE_FORMATS`."""
    if any(n is not None and n < 1 for n in counts.values()):
        *first, last = counts
        raise UserError(f"{', '.join(first)} and {last} must be at least 1" if first else f"{last} must be at least 1")
    if image_format not in IMAGE_FORMATS:
        raise UserError(f"--image-format must be {' or '.join(IMAGE_FORMATS)}, not {image_format!r}")


def checkpoint_folder(ref: str) -> Path | None:
    """The dlcr-data re-ID checkpoint `ref` names (a checkpoint folder, or a training run: its newest), or None."""
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        return None
    if not (folder / "config.json").is_file() and (folder / "checkpoints").is_dir():
        from dlcr_data.reid.checkpoints import latest_checkpoint  # lazy: imports torch

        folder = latest_checkpoint(folder) or folder
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None  # no (readable) config: let transformers say what is wrong
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(_CHECKPOINT_PREFIX):
        return None
    from dlcr_data.reid.checkpoints import CHECKPOINT_FORMAT

    if fmt != CHECKPOINT_FORMAT:
        raise UserError(
            f"{GATE_OPTION} {ref}: checkpoint format {fmt!r} is not supported (expected {CHECKPOINT_FORMAT})"
        )
    return folder
