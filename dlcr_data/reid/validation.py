"""Validation during training (`--eval-every N`): held-out identities that are not the test set.

Only datasets that ship a validation split can select a model: PRCC's `val` (its own identities, cameras A/B/C as
in test: camera C changes clothes) and LaST's `val_query`/`val_gallery`. Peers select on *test* data (CAL keeps
`best_model` by test rank-1 every 5 epochs; DLCR's refinement script loads that file): never here. Without a
validation split `--eval-every` is refused, and `evaluate` reports the final checkpoint.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dlcr_data.errors import UserError
from dlcr_data.loaders.prcc import CAMERAS as PRCC_CAMERAS
from dlcr_data.records import Record
from dlcr_data.reid.evaluate import dataset_features, summarise
from dlcr_data.reid.model import ReIDModel
from dlcr_data.reid.protocols import LAST_VAL, Protocol, evaluate_dataset


def _prcc(splits: Mapping[str, Sequence[Record]]) -> dict[str, list[Record]]:
    """PRCC's test protocol on the val identities: camera C (other clothes) and B (same) against camera A."""
    val = splits["val"]
    return {
        name: [r for r in val if r.camid == PRCC_CAMERAS[cam]] for name, cam in (("cc", "C"), ("sc", "B"), ("a", "A"))
    }


# dataset -> (derive the validation splits from the loaded ones, the protocols on them; the first selects)
VALIDATION: dict[str, tuple[Callable[[Mapping[str, Sequence[Record]]], dict], list[Protocol]]] = {
    "prcc": (_prcc, [Protocol("val_cc", "cc", "a", "general"), Protocol("val_sc", "sc", "a", "general")]),
    "last": (lambda s: {k: list(s[k]) for k in ("val_query", "val_gallery")}, [LAST_VAL]),
}


def check_validation(dataset: str) -> None:
    if dataset.lower() not in VALIDATION:
        have = ", ".join(VALIDATION)
        raise UserError(
            f"--eval-every: {dataset} has no validation split (datasets with one: {have}); selecting on test data "
            "would leak test labels into the model, so train without it and evaluate the final checkpoint"
        )


def validate(model: ReIDModel, dataset: str, splits: Mapping[str, Sequence[Record]], root: Path) -> dict:
    """{protocol: summary} on the validation identities, and "select": the first protocol's rank-1."""
    derive, protocols = VALIDATION[dataset.lower()]
    derived = derive(splits)
    if any(not records for records in derived.values()):
        empty = ", ".join(name for name, records in derived.items() if not records)
        raise UserError(f"--eval-every: {dataset}'s validation split is empty ({empty}); is the val folder there?")
    records = [r for rs in derived.values() for r in rs]
    features = dataset_features(model, records, root, batch_size=64)
    results = evaluate_dataset(dataset, derived, features, protocols=protocols)
    out = {name: {k: round(v, 2) for k, v in summarise(r).items() if k != "cmc"} for name, r in results.items()}
    return {**out, "select": out[protocols[0].name]["rank1"]}


def keep_if_best(out: Path, checkpoint: Path, history: list[dict]) -> bool:
    """Copy `checkpoint` to `out/best` when its validation score is the best so far (ties: the earlier stays)."""
    scores = [h["val"]["select"] for h in history if h.get("val")]
    if not scores or scores[-1] <= max(scores[:-1], default=float("-inf")):
        return False
    tmp = out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp)
    shutil.rmtree(out / "best", ignore_errors=True)
    tmp.rename(out / "best")
    return True
