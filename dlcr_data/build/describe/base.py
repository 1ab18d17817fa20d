"""What every describer takes and returns: the images of one outfit in, one "top | bottom | shoes" text out."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from dlcr_data.errors import UserError

if TYPE_CHECKING:
    from dlcr_data.build.options import BuildOptions

VLM_OPTION = "--vlm-model"
LLM_OPTION = "--llm-model"
MAX_PART_WORDS = 12


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

    def load(self, pixels: bool = True) -> OutfitImages:
        """Its images and garment maps; with `pixels=False`, neither (for a describer that does not read them)."""
        if not pixels:
            return OutfitImages(self.clothes_id, self.pid, list(self.keys), [], [])
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


class Describer(Protocol):
    name: str
    models: dict[str, str]  # role -> model id, recorded in every OutfitText; {} when no model is involved
    # True: reads each outfit's images and garment maps (so the training pool must be parsed); False: only its id
    reads_images: bool

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]: ...


def no_models(name: str, opts: BuildOptions) -> None:
    """A model-free describer refuses the model options (they apply to `vlm` only)."""
    for option, value in ((VLM_OPTION, opts.vlm_model), (LLM_OPTION, opts.llm_model)):
        if value is not None:
            raise UserError(f"{option} applies to --describer vlm, not {name}")


# -- validating an answer -------------------------------------------------------------------------------------
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
