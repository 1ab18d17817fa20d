"""The parse stage: one uint8 map of canonical garment classes per source image, cached as PNGs.

A `Parser` backend turns images into maps of `garments.CLASS_ID`s; `parse_records` runs one over records, writes
`<out_dir>/<key>.png` atomically and skips what is already there, so a killed build resumes where it stopped.
`clothing_mask` turns a map into DLCR's inpainting mask (docs/dlcr-method.md §2.3), optionally dilated. `run` is
the build's parse stage.

Backends (`PARSERS`): `segformer` (any transformers semantic-segmentation model, labels mapped by name) and `oracle`
(the masks a dataset ships; only the demo does). Each holds its `label_map`, model label -> garment class (None: no
class, painted as background), resolved by name rules (`garments.canonical_class`) and `--label-map` overrides; the
stage prints it, warns about labels nothing mapped, and keeps it in `work/<dataset>/label_map.json` for the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.errors import UserError
from dlcr_data.files import save_png_atomic, write_text_atomic
from dlcr_data.pretrained import default_device, default_dtype, load_pretrained
from dlcr_data.records import Record, Skipped, unreadable
from dlcr_data.vocab.garments import (
    CLASS_ID,
    DEFAULT_MASK_CLASSES,
    canonical_class,
    check_classes,
    labels_by_class,
    read_label_map,
)

if TYPE_CHECKING:
    from dlcr_data.build.context import BuildContext
    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset

DEFAULT_SEGFORMER_MODEL = "mattmdjaga/segformer_b2_clothes"  # public SegFormer-B2 trained on ATR clothes parsing
MODEL_OPTION = "--parser-model"
LABEL_MAP_FILE = "label_map.json"  # under work/<dataset>/: the label map the cached garment maps were made with


class ItemError(Exception):
    """One item could not be parsed (e.g. its shipped mask is missing); `parse_records` turns it into a Skipped."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Parser(Protocol):
    name: str
    model_id: str | None  # recorded in build manifests; None when no model is involved
    label_map: dict[str, str | None]  # model label -> garment class; None: no class (painted as background)
    unmapped: tuple[str, ...]  # the labels no rule and no --label-map entry gave a class

    def parse(self, images: list[Image.Image], records: list[Record], root: Path) -> list[np.ndarray]:
        """Per image, an HxW uint8 map (the image's own size) of `garments.CLASS_ID`s."""
        ...


def resolve_label_map(
    labels: Iterable[str],
    overrides: Mapping[str, str | None] | None = None,
    rules: Callable[[str], str | None] = canonical_class,
    model: str = "the parser",
) -> tuple[dict[str, str | None], tuple[str, ...]]:
    """Label -> garment class by `rules`, each label `overrides` names taking its value instead; also the labels
    left without a class that `overrides` does not name (the ones to warn about).

    A label without a class is painted as background: better a garment left unmasked than skin repainted. An
    override naming no label of `model` is a one-line UserError listing the labels it has.
    """
    labels = list(dict.fromkeys(labels))
    overrides = dict(overrides or {})
    unknown = [label for label in overrides if label not in labels]
    if unknown:
        raise UserError(
            f"--label-map names {', '.join(map(repr, unknown))}, not among the labels of {model} "
            f"({', '.join(map(repr, labels))}); fix the file (and rerun with --overwrite where this out folder "
            "recorded a build with the old map)"
        )
    table = {label: overrides[label] if label in overrides else rules(label) for label in labels}
    return table, tuple(label for label, cls in table.items() if cls is None and label not in overrides)


def label_lut(id2label: Mapping[int, str], label_map: Mapping[str, str | None]) -> np.ndarray:
    """Model label id -> garment class id (background where `label_map` gives no class)."""
    lut = np.zeros(max(id2label, default=-1) + 1, np.uint8)
    for idx, label in id2label.items():
        lut[idx] = CLASS_ID[label_map.get(label) or "background"]
    return lut


def option_label_map(opts: BuildOptions) -> dict[str, str | None] | None:
    """The `--label-map` overrides of a build (a file, or its content as a resolved build records it)."""
    return None if opts.label_map is None else read_label_map(opts.label_map)


class SegformerParser(Backend):
    """A transformers semantic-segmentation model (SegFormer or any `AutoModelForSemanticSegmentation`)."""

    name = "segformer"
    default_model = DEFAULT_SEGFORMER_MODEL
    model_option = MODEL_OPTION

    def __init__(
        self,
        model: str = DEFAULT_SEGFORMER_MODEL,
        *,
        revision: str | None = None,
        device: str | None = None,
        batch_size: int = 8,
        label_map: Mapping[str, str | None] | None = None,
    ) -> None:
        """`label_map` overrides the name rules label by label (`{"Torso": "skin"}`; None: no class)."""
        import torch
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        self.model_id = model
        self.revision = revision
        self.device = device or default_device()
        self.batch_size = batch_size
        # The PIL backend needs no torchvision and gives the same pixels on every machine.
        self.processor = load_pretrained(
            AutoImageProcessor.from_pretrained, model, MODEL_OPTION, revision=revision, backend="pil"
        )
        self.dtype = default_dtype(self.device)
        net = load_pretrained(
            AutoModelForSemanticSegmentation.from_pretrained, model, MODEL_OPTION, revision=revision, dtype=self.dtype
        )
        self.model = net.to(self.device).eval()
        id2label = {int(i): label for i, label in self.model.config.id2label.items()}
        labels = [id2label[i] for i in sorted(id2label)]
        self.label_map, self.unmapped = resolve_label_map(labels, label_map, model=model)
        self.lut = label_lut(id2label, self.label_map)
        self._lut = torch.from_numpy(self.lut).to(self.device)

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> SegformerParser:
        model = opts.parser_model or cls.default_model
        return cls(model, batch_size=opts.batch_size, label_map=option_label_map(opts))

    def parse(self, images: list[Image.Image], records: list[Record], root: Path) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(self._parse_batch(images[start : start + self.batch_size]))
        return out

    def _parse_batch(self, images: list[Image.Image]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        # The processor resizes every image to one size, so mixed sizes batch fine; each output is scaled back.
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels.to(self.device, self.dtype)).logits.float()
            maps = []
            for logit, image in zip(logits, images, strict=True):
                size = (image.height, image.width)
                up = F.interpolate(logit[None], size=size, mode="bilinear", align_corners=False)
                maps.append(self._lut[up[0].argmax(0)].cpu().numpy())
        return maps


class OracleParser(Backend):
    """The parsing masks a dataset ships, mapped to canonical classes (only the demo has them)."""

    name = "oracle"
    model_id = None

    # Demo label (dlcr_data.demo.labels) -> canonical class; arms and legs are bare skin.
    DEMO_CLASSES = ("background", "hair", "face", "upper", "lower", "shoes", "skin", "skin")

    def __init__(self, dataset: str, label_map: Mapping[str, str | None] | None = None) -> None:
        from dlcr_data.demo.labels import LABELS
        from dlcr_data.loaders import get

        self.spec = get(dataset)
        if not self.spec.ships_masks:
            raise UserError(f"dataset {dataset} ships no parsing masks; use --parser segformer")
        demo = dict(zip(LABELS, self.DEMO_CLASSES, strict=True))
        self.label_map, self.unmapped = resolve_label_map(LABELS, label_map, demo.get, f"the {dataset} masks")
        self.lut = np.zeros(256, np.uint8)  # labels outside the demo's 0-7 read as background
        self.lut[: len(LABELS)] = label_lut(dict(enumerate(LABELS)), self.label_map)

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> OracleParser:
        if opts.parser_model is not None:
            raise UserError(f"{MODEL_OPTION} applies to --parser segformer, not oracle")
        return cls(spec.name, option_label_map(opts))

    def parse(self, images: list[Image.Image], records: list[Record], root: Path) -> list[np.ndarray]:
        maps = []
        for image, record in zip(images, records, strict=True):
            path = self.spec.mask_path(root, record)
            try:
                with Image.open(path) as im:
                    labels = np.asarray(im)  # 8-bit label values, written as mode L
            except FileNotFoundError as err:
                shipped = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
                raise ItemError(record.path, f"no shipped mask at {shipped} (under the dataset root)") from err
            except Exception as err:  # PIL raises many types for broken files
                raise ItemError(record.path, unreadable("mask", path, err)) from err
            if labels.shape != (image.height, image.width):
                raise ItemError(record.path, f"mask size {labels.shape[::-1]} differs from image size {image.size}")
            maps.append(self.lut[labels])
        return maps


PARSERS: dict[str, type[Parser]] = {cls.name: cls for cls in (SegformerParser, OracleParser)}


def clothing_mask(
    garment_map: np.ndarray, classes: tuple[str, ...] = DEFAULT_MASK_CLASSES, dilation: int = 0
) -> np.ndarray:
    """HxW bool: pixels of `classes`, grown by `dilation` pixels (square element, i.e. Chebyshev distance)."""
    ids = [CLASS_ID[c] for c in check_classes(classes)]
    mask = np.isin(garment_map, ids)
    if dilation > 0:
        mask = _grow_rows(_grow_rows(mask, dilation).T, dilation).T  # a square max filter is separable
    return mask


def _grow_rows(mask: np.ndarray, d: int) -> np.ndarray:
    """Row i becomes the OR of rows i-d..i+d (O(d) vectorised passes, no per-pixel loop)."""
    out = mask.copy()
    for k in range(1, min(d, len(mask) - 1) + 1):
        out[k:] |= mask[:-k]
        out[:-k] |= mask[k:]
    return out


def map_path(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / f"{key}.png"


def load_garment_map(out_dir: Path, key: str) -> np.ndarray:
    """The cached HxW uint8 map of one record."""
    with Image.open(map_path(out_dir, key)) as im:
        return np.array(im)


def _save_map(garment_map: np.ndarray, path: Path) -> None:
    """Atomic (temp + rename): a kill at any moment leaves either no file or a complete one."""
    save_png_atomic(Image.fromarray(garment_map.astype(np.uint8, copy=False), mode="L"), path)


def load_image(root: Path, record: Record) -> Image.Image | Skipped:
    """A record's RGB image, or a `Skipped` saying why it cannot be read (PIL raises many error types)."""
    try:
        with Image.open(root / record.image_path) as im:  # video: the tracklet's first frame
            return im.convert("RGB")
    except Exception as err:  # PIL raises many types for broken files
        return Skipped(record.path, unreadable("image", root / record.image_path, err))


def _batches(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def parse_records(
    records: list[Record],
    root: Path,
    parser: Parser,
    out_dir: Path,
    *,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[Skipped]:
    """Write `out_dir/<key>.png` for every record that lacks one; return the records left out, with reasons.

    `progress(n)` is called with the number of records finished: once for those already cached, then per batch.
    """
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in records if not map_path(out_dir, r.key).exists()]
    if progress and len(todo) < len(records):
        progress(len(records) - len(todo))
    skipped: list[Skipped] = []
    for batch in _batches(todo, max(1, batch_size)):
        loaded = [(r, load_image(root, r)) for r in batch]
        skipped.extend(item for _, item in loaded if isinstance(item, Skipped))
        good = [(r, im) for r, im in loaded if isinstance(im, Image.Image)]
        for record, garment_map in _parse_isolating(parser, good, root, skipped):
            _save_map(garment_map, map_path(out_dir, record.key))
        if progress:
            progress(len(batch))
    return skipped


def _parse_isolating(
    parser: Parser, items: list[tuple[Record, Image.Image]], root: Path, skipped: list[Skipped]
) -> list[tuple[Record, np.ndarray]]:
    """Parse a batch; if an item fails, retry one by one so only the failing items are skipped."""
    if not items:
        return []
    records, images = [r for r, _ in items], [im for _, im in items]
    try:
        return list(zip(records, parser.parse(images, records, root), strict=True))
    except ItemError as err:
        if len(items) == 1:
            skipped.append(Skipped(records[0].path, err.reason))
            return []
    return [pair for item in items for pair in _parse_isolating(parser, [item], root, skipped)]


# -- the stage ----------------------------------------------------------------------------------------------------
def run(ctx: BuildContext, records: list[Record]) -> set[str]:
    """Garment maps for every record (split across processes); returns the keys that have one."""
    from accelerate.utils import gather_object

    opts = ctx.opts
    parser = ctx.backends.parser.from_options(opts, ctx.spec)
    report_label_map(ctx, parser)
    with ctx.state.split_between_processes(records) as mine:
        advance = ctx.reporter.stage("parse", len(records))
        skipped = parse_records(mine, ctx.root, parser, ctx.masks, batch_size=opts.batch_size, progress=advance)
    del parser
    all_skipped = gather_object([(s.path, s.reason) for s in skipped])
    ctx.skipped += [{"path": p, "reason": r, "stage": "parse"} for p, r in sorted(set(all_skipped))]
    ctx.reporter.done("parse")
    ctx.state.wait_for_everyone()
    return {r.key for r in records if map_path(ctx.masks, r.key).exists()}


def report_label_map(ctx: BuildContext, parser: Parser) -> None:
    """Show the parser's label map (and warn about labels without a class); keep it for the manifest entry."""
    ctx.reporter.note(label_map_text(parser, ctx.opts.mask_classes))
    if parser.unmapped:
        ctx.reporter.note(
            f"{len(parser.unmapped)} parser label(s) match no garment class and are painted as background: "
            f"{', '.join(parser.unmapped)}; give them a class (or null) with --label-map FILE.json",
            warning=True,
        )
    if ctx.main():  # model order, as the model numbers its labels
        write_text_atomic(ctx.work / LABEL_MAP_FILE, json.dumps(parser.label_map, indent=2) + "\n")


def label_map_text(parser: Parser, mask_classes: tuple[str, ...]) -> str:
    """The label map as lines of text, one per garment class, marking the classes in the mask."""
    source = f"{parser.name} {parser.model_id}" if parser.model_id else parser.name
    rows = [
        (f"{cls or 'no class (background)'}{' *' if cls in mask_classes else ''}", labels)
        for cls, labels in labels_by_class(parser.label_map)
    ]
    width = max((len(name) for name, _ in rows), default=0)
    lines = [f"parse: {source} labels -> garment classes (* = in the mask)"]
    lines += [f"  {name:<{width}} <- {', '.join(labels)}" for name, labels in rows]
    return "\n".join(lines)
