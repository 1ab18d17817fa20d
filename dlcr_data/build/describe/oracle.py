"""The `oracle` describer: the ground-truth outfit texts a dataset ships (only the demo does)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dlcr_data.build.backends import Backend
from dlcr_data.build.describe.base import OutfitImages, OutfitText, no_models, parse_outfit_text
from dlcr_data.errors import UserError

if TYPE_CHECKING:
    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset


class OracleDescriber(Backend):
    """Ground-truth texts (clothes_id -> "top | bottom | shoes"); images are not looked at."""

    name = "oracle"
    reads_images = False  # the texts are looked up by clothes_id: the pool needs no parsing

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

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> OracleDescriber:
        no_models(cls.name, opts)
        return cls.for_dataset(spec.name, opts.root)

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]:
        out = []
        for o in outfits:
            parts = parse_outfit_text(self.texts.get(o.clothes_id, ""))
            if parts is None:
                raise UserError(f"oracle: no valid ground-truth text for outfit {o.clothes_id}")
            out.append(OutfitText(o.clothes_id, o.pid, *parts, describer=self.name, models={}))
        return out
