"""The describe stage: one "top | bottom | shoes" text per outfit, the prompts that the plan hands to other people.

A `Describer` backend turns the images of one outfit (and their garment maps) into an `OutfitText`;
`describe_outfits` runs one over all outfits, caches each result as `<cache_dir>/<clothes_id>.json` (so a killed
run resumes), and writes `work/outfits.jsonl` sorted by clothes_id.

Backends:
- `vlm`: DLCR's recipe (dlcr-method.md §2.1-2.2) with any transformers models: a VLM captions each image, an LLM
  summarises *all* captions of an outfit into the released "top | bottom | shoes" line (§2.8). Unlike the
  original's silent 200-word cut, captions that do not fit the LLM's context are dropped evenly and counted
  (`captions_dropped`); malformed answers are retried once, then replaced by the `color` answer, recorded in
  `fallback`.
- `color`: no model; names the median colour of the upper, lower and shoe pixels.
- `oracle`: the ground-truth texts a dataset ships (only the demo does).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from dlcr_data.errors import UserError
from dlcr_data.files import write_text_atomic
from dlcr_data.pretrained import default_device, default_dtype, load_pretrained
from dlcr_data.records import Record, make_key
from dlcr_data.vocab.colors import name_colour
from dlcr_data.vocab.garments import CLASS_ID

log = logging.getLogger(__name__)

DEFAULT_VLM = "llava-hf/llava-1.5-7b-hf"
DEFAULT_LLM = "meta-llama/Llama-3.1-8B-Instruct"
VLM_OPTION = "--vlm-model"
LLM_OPTION = "--llm-model"
MAX_PART_WORDS = 12

CAPTION_QUESTION = (
    "Describe the clothes this person is wearing: the top, the bottom (trousers, jeans, shorts, skirt ...) "
    "and the shoes, with their colours."
)
SUMMARY_PROMPT = (
    "Below are {n} descriptions of photos of the same person, always wearing the same outfit.\n\n{captions}\n\n"
    "Summarise the outfit as three short phrases, each with its colour: the upper-body garment, the lower-body "
    "garment and the shoes, in the form\ntop | bottom | shoes\nfor example: grey hooded sweatshirt | blue jeans | "
    "white sneakers\nAnswer with that one line only."
)
STRICT_SUFFIX = (
    "\n\nImportant: reply with exactly one line of three phrases separated by ' | ', at most "
    f"{MAX_PART_WORDS} words each, and nothing else: no labels, no numbering, no explanation."
)


# -- data -----------------------------------------------------------------------------------------------------
@dataclass
class OutfitImages:
    """The images of one outfit, with one garment map (uint8 `garments.CLASS_ID`s, image-sized) per image."""

    clothes_id: str
    pid: int
    keys: list[str]
    images: list[Image.Image]
    garment_maps: list[np.ndarray]


@dataclass(frozen=True)
class OutfitRef:
    """An outfit by file paths: `load()` reads its images and maps on demand, so grouping a dataset costs no RAM."""

    clothes_id: str
    pid: int
    keys: tuple[str, ...]
    paths: tuple[Path, ...]
    load_map: Callable[[str], np.ndarray] = field(repr=False, compare=False)

    def load(self) -> OutfitImages:
        images = []
        for path in self.paths:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        maps = [np.asarray(self.load_map(key), np.uint8) for key in self.keys]
        return OutfitImages(self.clothes_id, self.pid, list(self.keys), images, maps)


@dataclass
class OutfitText:
    """The description of one outfit, and how it was made."""

    clothes_id: str
    pid: int
    top: str
    bottom: str
    shoes: str
    describer: str
    models: dict[str, str] = field(default_factory=dict)  # role -> model id, e.g. {"vlm": ..., "llm": ...}
    fallback: str | None = None  # None: the backend's own answer; else why, and what replaced it
    captions: list[str] = field(default_factory=list)  # the VLM captions given to the LLM
    raw: str = ""  # the LLM's last raw answer
    attempts: int = 0  # LLM calls made
    captions_dropped: int = 0  # captions that did not fit the LLM's context (never dropped silently)

    @property
    def text(self) -> str:
        return f"{self.top} | {self.bottom} | {self.shoes}"

    def to_json(self) -> str:
        """One JSON line; `text` is included for readers without this package (ignored by `from_json`)."""
        return json.dumps({**asdict(self), "text": self.text}, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | Mapping) -> OutfitText:
        obj = dict(json.loads(data) if isinstance(data, str) else data)
        obj.pop("text", None)
        return cls(**obj)


# -- validating an LLM answer ---------------------------------------------------------------------------------
_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d+[.)])\s*")
_LABEL = re.compile(r"^[a-z][a-z ]{0,20}:\s*")  # "Top: ", "Answer: ", "Lower body: "
_TEMPLATE_ECHO = {("top", "bottom", "shoes"), ("top", "bottoms", "shoes")}


def _clean_part(part: str) -> str:
    part = re.sub(r"[*_`\"“”]", "", part).strip().lower()  # markdown emphasis and quotes
    part = _LABEL.sub("", part)
    return " ".join(part.split()).strip(" '.,;:")


def parse_outfit_text(s: str) -> tuple[str, str, str] | None:
    """The first line of `s` made of exactly three `|`-separated phrases (≤ 12 words, some letters each), cleaned.

    Tolerates text around that line, bullets, quotes, markdown table pipes and "Top:"-style labels; None when no
    line qualifies (a header echoing "top | bottom | shoes" does not).
    """
    for line in s.splitlines():
        line = _BULLET.sub("", line.strip()).strip().strip("|")
        if line.count("|") != 2:
            continue
        parts = tuple(_clean_part(p) for p in line.split("|"))
        words_ok = all(re.search("[a-z]", p) and len(p.split()) <= MAX_PART_WORDS for p in parts)
        if words_ok and parts not in _TEMPLATE_ECHO:  # a letter each: markdown rules ("---") do not count
            return parts  # type: ignore[return-value]
    return None


# -- backends -------------------------------------------------------------------------------------------------
class Describer(Protocol):
    name: str
    models: dict[str, str]  # role -> model id, recorded in every OutfitText; {} when no model is involved

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]: ...


class ColorDescriber:
    """No model: the median colour of each garment region over all images of the outfit, named from `colors`.

    Regions: top = upper + dress ("dress" when dress pixels dominate, else "top"), bottom = lower ("bottoms": the
    map does not tell trousers from skirts), shoes = shoes. A region absent from every image gets its bare noun
    (e.g. "shoes"): the colour is unknown, and `colors.find_colour` on it returns None.
    """

    name = "color"
    max_pixels = 4096  # per region and image: a strided sample is enough for a median

    def __init__(self) -> None:
        self.models: dict[str, str] = {}

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]:
        return [self.describe_one(o) for o in outfits]

    def describe_one(self, outfit: OutfitImages) -> OutfitText:
        upper, dress, lower, shoes = ([] for _ in range(4))
        for image, garment_map in zip(outfit.images, outfit.garment_maps, strict=True):
            rgb, labels = np.asarray(image.convert("RGB")), _fit_map(garment_map, image)
            for pixels, cls in ((upper, "upper"), (dress, "dress"), (lower, "lower"), (shoes, "shoes")):
                region = rgb[labels == CLASS_ID[cls]]
                pixels.append(region[:: max(1, len(region) // self.max_pixels)])
        n_dress, n_upper = sum(map(len, dress)), sum(map(len, upper))
        top = _name_region([*upper, *dress], "dress" if n_dress > n_upper else "top")
        return OutfitText(
            outfit.clothes_id,
            outfit.pid,
            top,
            _name_region(lower, "bottoms"),
            _name_region(shoes, "shoes"),
            describer=self.name,
            models={},
        )


def _fit_map(garment_map: np.ndarray, image: Image.Image) -> np.ndarray:
    """The map at the image's size (a parser may have stored it at another size; nearest keeps class ids)."""
    garment_map = np.asarray(garment_map, np.uint8)
    if garment_map.shape == (image.height, image.width):
        return garment_map
    return np.asarray(Image.fromarray(garment_map).resize(image.size, Image.Resampling.NEAREST))


def _name_region(pixels: list[np.ndarray], noun: str) -> str:
    stacked = np.concatenate([p.reshape(-1, 3) for p in pixels]) if pixels else np.empty((0, 3))
    if not len(stacked):
        return noun
    return f"{name_colour(np.median(stacked, axis=0))} {noun}"


class OracleDescriber:
    """Ground-truth texts (clothes_id -> "top | bottom | shoes"); images are not looked at."""

    name = "oracle"

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = dict(texts)
        self.models: dict[str, str] = {}

    @classmethod
    def for_dataset(cls, name: str, root: str | Path | None = None) -> OracleDescriber:
        """The texts a dataset ships (`ships_outfit_texts`; the demo does)."""
        from dlcr_data.loaders import get

        spec = get(name)
        if not spec.ships_outfit_texts:
            raise UserError(f"dataset {name} ships no outfit texts; use --describer vlm or color")
        return cls(spec.outfit_texts(spec.resolve_root(root)))

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]:
        out = []
        for o in outfits:
            parts = parse_outfit_text(self.texts.get(o.clothes_id, ""))
            if parts is None:
                raise UserError(f"oracle: no valid ground-truth text for outfit {o.clothes_id}")
            out.append(OutfitText(o.clothes_id, o.pid, *parts, describer=self.name, models={}))
        return out


class VLMDescriber:
    """DLCR's captions + summary: a VLM captions every image, an LLM turns an outfit's captions into one line.

    Both models stay loaded (about 30 GB in bf16 for the defaults). Greedy decoding throughout, so the same inputs
    give the same texts; batches are left-padded, so a caption does not depend on its batch.
    """

    name = "vlm"

    def __init__(
        self,
        vlm: str = DEFAULT_VLM,
        llm: str = DEFAULT_LLM,
        *,
        device: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 96,
        captions_per_outfit: int | None = None,
        context_tokens: int | None = None,
        revision: str | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        self.models = {"vlm": vlm, "llm": llm}
        self.device = device or default_device()
        self.dtype = default_dtype(self.device)
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self.captions_per_outfit = captions_per_outfit
        rev = {"revision": revision} if revision else {}
        self.processor = load_pretrained(AutoProcessor.from_pretrained, vlm, VLM_OPTION, **rev)
        self.processor.tokenizer.padding_side = "left"  # decoder-only batching: prompts end where answers start
        if getattr(self.processor, "chat_template", None) is None:
            raise UserError(f"{VLM_OPTION} {vlm}: its processor has no chat template; pass a chat/instruct VLM")
        vlm_model = load_pretrained(
            AutoModelForImageTextToText.from_pretrained, vlm, VLM_OPTION, dtype=self.dtype, **rev
        )
        self.vlm = vlm_model.to(self.device).eval()
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, llm, LLM_OPTION, **rev)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.chat_template is None:
            raise UserError(f"{LLM_OPTION} {llm}: its tokenizer has no chat template; pass an instruct/chat model")
        if self.tokenizer.pad_token is None:  # Llama 3 ships none; pad positions are masked out anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        llm_model = load_pretrained(AutoModelForCausalLM.from_pretrained, llm, LLM_OPTION, dtype=self.dtype, **rev)
        self.llm = llm_model.to(self.device).eval()
        self.context_tokens = _context_size(self.llm.config, self.tokenizer, context_tokens)
        self._color = ColorDescriber()

    # -- captions ---------------------------------------------------------------------------------------------
    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image, in batches of `batch_size`."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_QUESTION}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        captions: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            inputs = self.processor(
                images=batch,
                text=[prompt] * len(batch),
                return_tensors="pt",
                padding=True,
                add_special_tokens=not _starts_with_bos(prompt, self.processor.tokenizer),
            )
            captions.extend(self._generate(self.vlm, self.processor.tokenizer, inputs))
        return [" ".join(c.split()) for c in captions]

    def _generate(self, model, tokenizer, inputs) -> list[str]:
        import torch

        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        return tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    # -- summaries --------------------------------------------------------------------------------------------
    def _prompt(self, captions: list[str], strict: bool) -> str:
        numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(captions, 1))
        text = SUMMARY_PROMPT.format(n=len(captions), captions=numbered) + (STRICT_SUFFIX if strict else "")
        # All in one user turn: some chat templates (Gemma, Mistral) reject a system role.
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )

    def _prompt_tokens(self, prompt: str) -> int:
        add = not _starts_with_bos(prompt, self.tokenizer)
        return len(self.tokenizer(prompt, add_special_tokens=add)["input_ids"])

    def fit_captions(self, captions: list[str]) -> list[str]:
        """All captions if the (strict, longer) prompt fits the LLM's context, else the most that fit, evenly spread."""
        budget = self.context_tokens - self.max_new_tokens

        def fits(k: int) -> bool:
            return self._prompt_tokens(self._prompt([captions[i] for i in _spread(len(captions), k)], True)) <= budget

        if fits(len(captions)):
            return captions
        lo, hi = 0, len(captions)  # fits(hi) is False; find the largest k that fits (prompt length grows with k)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return [captions[i] for i in _spread(len(captions), lo)]  # lo == 0: not even one fits

    def _summarise_once(self, prompts: list[str]) -> list[str]:
        """Raw LLM answers to rendered chat prompts (the seam tests replace)."""
        answers: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            inputs = self.tokenizer(
                batch,
                return_tensors="pt",
                padding=True,
                add_special_tokens=not _starts_with_bos(batch[0], self.tokenizer),
            )
            answers.extend(self._generate(self.llm, self.tokenizer, inputs))
        return answers

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]:
        # Caption the chosen images of all outfits together, so batches fill up across small outfits.
        chosen = [[o.images[i] for i in _spread(len(o.images), self.captions_per_outfit)] for o in outfits]
        flat = self.caption([im for images in chosen for im in images])
        per_outfit: list[list[str]] = []
        for images in chosen:
            per_outfit.append(flat[: len(images)])
            flat = flat[len(images) :]

        results = [
            OutfitText(o.clothes_id, o.pid, "", "", "", describer=self.name, models=dict(self.models)) for o in outfits
        ]
        used = [self.fit_captions(c) for c in per_outfit]
        for res, all_caps, caps in zip(results, per_outfit, used, strict=True):
            res.captions, res.captions_dropped = caps, len(all_caps) - len(caps)
            if res.captions_dropped:
                log.warning(
                    "outfit %s: %d of %d captions did not fit the LLM context (%d tokens); used %d, evenly spread",
                    res.clothes_id,
                    res.captions_dropped,
                    len(all_caps),
                    self.context_tokens,
                    len(caps),
                )
        # First a plain prompt, then one stricter retry for answers that do not parse.
        todo = [i for i, caps in enumerate(used) if caps]
        for strict in (False, True):
            if not todo:
                break
            answers = self._summarise_once([self._prompt(used[i], strict) for i in todo])
            for i, answer in zip(todo, answers, strict=True):
                results[i].raw, results[i].attempts = answer, results[i].attempts + 1
                parts = parse_outfit_text(answer)
                if parts:
                    results[i].top, results[i].bottom, results[i].shoes = parts
            todo = [i for i in todo if not results[i].top]

        for outfit, res in zip(outfits, results, strict=True):
            if res.top:
                continue
            why = (
                f"LLM answer malformed after {res.attempts} attempts"
                if res.captions
                else ("no images" if not outfit.images else "not one caption fits the LLM context")
            )
            color = self._color.describe_one(outfit)
            res.top, res.bottom, res.shoes = color.top, color.bottom, color.shoes
            res.fallback = f"{why}; used the color describer's answer"
        return results


def _starts_with_bos(prompt: str, tokenizer) -> bool:
    """A chat template that writes BOS itself must not get a second one from the tokenizer."""
    return bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)


def _context_size(config, tokenizer, cap: int | None) -> int:
    """Prompt + answer tokens the LLM takes: its position limit, the tokenizer's limit and the user's cap."""
    config = getattr(config, "text_config", None) or config
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length, cap]
    return min(int(n) for n in limits if n and n < 10**9)  # unset limits are huge sentinels


def _spread(n: int, k: int | None) -> list[int]:
    """`k` indices evenly spaced over range(n) (all of them when k is None or ≥ n); deterministic."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return [int(i) for i in np.linspace(0, n - 1, k).round().astype(int)]


# -- registry -------------------------------------------------------------------------------------------------
def _vlm(vlm: str | None, llm: str | None, *, dataset: str, root: str | Path | None, **options) -> Describer:
    return VLMDescriber(vlm or DEFAULT_VLM, llm or DEFAULT_LLM, **options)


def _no_models(name: str, vlm: str | None, llm: str | None) -> None:
    for option, value in ((VLM_OPTION, vlm), (LLM_OPTION, llm)):
        if value is not None:
            raise UserError(f"{option} applies to --describer vlm, not {name}")


def _color(vlm: str | None, llm: str | None, *, dataset: str, root: str | Path | None, **options) -> Describer:
    # Inference options (device, batch size ...) are accepted and ignored, so the CLI can pass them to any backend.
    _no_models("color", vlm, llm)
    return ColorDescriber()


def _oracle(vlm: str | None, llm: str | None, *, dataset: str, root: str | Path | None, **options) -> Describer:
    _no_models("oracle", vlm, llm)
    return OracleDescriber.for_dataset(dataset, root)


DESCRIBERS: dict[str, Callable[..., Describer]] = {"vlm": _vlm, "color": _color, "oracle": _oracle}


def make_describer(
    name: str,
    *,
    dataset: str,
    root: str | Path | None = None,
    vlm: str | None = None,
    llm: str | None = None,
    **options,
) -> Describer:
    """The describer registered as `name`; `vlm`/`llm` are HF ids or local folders (vlm backend only)."""
    factory = DESCRIBERS.get(name.lower())
    if factory is None:
        raise UserError(f"unknown describer {name!r}; choose one of: {', '.join(DESCRIBERS)}")
    return factory(vlm, llm, dataset=dataset, root=root, **options)


# -- grouping and the stage -----------------------------------------------------------------------------------
def group_outfits(
    records: Iterable[Record], root: str | Path, load_map: Callable[[str], np.ndarray]
) -> list[OutfitRef]:
    """One `OutfitRef` per (pid, clothes_id), sorted; images (a video's first frame) load only on `load()`.

    `load_map(key)` returns a record's garment map, e.g. `functools.partial(parse.load_garment_map, maps_dir)`.
    """
    root = Path(root)
    groups: dict[tuple[int, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.pid, r.clothes_id), []).append(r)
    return [
        OutfitRef(
            clothes_id,
            pid,
            tuple(r.key for r in recs),
            tuple(root / (r.frames[0] if r.frames else r.path) for r in recs),
            load_map,
        )
        for (pid, clothes_id), recs in sorted(groups.items())
        for recs in [sorted(recs, key=lambda r: r.key)]
    ]


def cache_path(cache_dir: Path, clothes_id: str) -> Path:
    return Path(cache_dir) / f"{make_key(clothes_id)}.json"


def _cached(cache_dir: Path | None, clothes_id: str, describer: Describer) -> OutfitText | None:
    """A cached result of this outfit by the same backend and models; anything else is redone."""
    if cache_dir is None:
        return None
    path = cache_path(cache_dir, clothes_id)
    try:
        text = OutfitText.from_json(path.read_text())
    except (OSError, ValueError, TypeError):  # missing, or unreadable/old schema: redo it
        return None
    same = (text.clothes_id, text.describer, text.models) == (clothes_id, describer.name, dict(describer.models))
    return text if same else None


def describe_outfits(
    outfits: Iterable[OutfitImages | OutfitRef],
    describer: Describer,
    out_path: Path | None,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 8,
) -> list[OutfitText]:
    """Describe every outfit, resumably; write `out_path` (JSON lines sorted by clothes_id) and return the texts.

    Outfits are handled `chunk_size` at a time (an `OutfitRef` is loaded just before), each result is cached as
    `cache_dir/<clothes_id>.json` at once, and a rerun reuses cached results made by the same backend and models.
    `out_path=None` only fills the cache (one process's share of a distributed run; the main process merges).
    `progress(n)` is called with the number of outfits finished (1 each), cached ones included.
    """
    done: dict[str, OutfitText] = {}

    def finish(text: OutfitText) -> None:
        done[text.clothes_id] = text
        if progress:
            progress(1)

    def run(chunk: list[OutfitImages | OutfitRef]) -> None:
        loaded = [o.load() if isinstance(o, OutfitRef) else o for o in chunk]
        for text in describer.describe(loaded):
            if cache_dir is not None:
                write_text_atomic(cache_path(cache_dir, text.clothes_id), text.to_json() + "\n")
            finish(text)

    pending: list[OutfitImages | OutfitRef] = []  # streamed: at most one chunk is held (and loaded) at a time
    for item in outfits:
        cached = _cached(cache_dir, item.clothes_id, describer)
        if cached:
            finish(cached)
            continue
        pending.append(item)
        if len(pending) >= chunk_size:
            run(pending)
            pending = []
    if pending:
        run(pending)
    texts = [done[c] for c in sorted(done)]
    if out_path is not None:
        write_text_atomic(Path(out_path), "".join(t.to_json() + "\n" for t in texts))
    return texts


def read_outfits(path: str | Path) -> dict[str, OutfitText]:
    """clothes_id -> OutfitText, from a file written by `describe_outfits`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no outfit texts at {path}; run the describe stage first")
    texts = (OutfitText.from_json(line) for line in path.read_text().splitlines() if line.strip())
    return {t.clothes_id: t for t in texts}
