"""The plan: for every source image and variant k, a target outfit and a seed.

Every choice is a pure function of (global seed, image key, k) and the sorted outfit pool, so the plan is the same
whatever the number of processes, the batch size or the order in which work finishes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .io import write_text_atomic
from .records import Record

DEFAULT_PROMPT_TEMPLATE = "a person wearing {top}, {bottom} and {shoes}"


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
    seed: int
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
) -> list[PlannedVariant]:
    """DLCR's prompt pool: each image gets `variants` targets drawn from the *other* outfits (clothes_id -> text).

    Targets are distinct while the pool allows (a seeded permutation of the pool without the image's own outfit),
    and cycle through it again when `variants` exceeds the pool. With `donors` (clothes_id -> the training images
    wearing it), each variant also gets an appearance provider: one of those images, drawn from (seed, key, k);
    outfits without a donor image are then left out of the pool.
    """
    pool = sorted(c for c in outfits if donors is None or donors.get(c))
    plan: list[PlannedVariant] = []
    for rec in records:
        candidates = [c for c in pool if c != rec.clothes_id]
        if not candidates:
            continue
        order = np.random.default_rng(derive_seed(seed, "targets", rec.key)).permutation(len(candidates))
        for k in range(variants):
            target = candidates[int(order[k % len(candidates)])]
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
                )
            )
    return plan


def _donor(donors: Mapping[str, Sequence[Record]] | None, outfit: str, seed: int, key: str, k: int) -> dict:
    """The appearance provider of variant k of image `key`: one of the images wearing `outfit` (sorted by key)."""
    if donors is None:
        return {}
    wearing = sorted(donors[outfit], key=lambda r: r.key)
    donor = wearing[derive_seed(seed, "donor", key, k) % len(wearing)]
    return {"appearance_key": donor.key, "appearance_pid": donor.pid}


def write_plan(plan: list[PlannedVariant], path: Path) -> None:
    write_text_atomic(path, "".join(p.to_json() + "\n" for p in plan))


def read_plan(path: Path) -> list[PlannedVariant]:
    return [PlannedVariant(**json.loads(line)) for line in path.read_text().splitlines() if line]
