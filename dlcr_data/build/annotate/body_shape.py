"""Body-shape annotation (CLIP3DReID): per-image scores over the SHAPY body-shape words.

CLIP3DReID (Liu et al., "Distilling CLIP with Dual Guidance for Learning Discriminative Human Body Shape
Representation", CVPR 2024) labels every training image with body-shape descriptors by zero-shot CLIP (cosine of
the image to "a photo of a person with {descriptor}" prompts), then trains a re-ID student whose local features
are aligned to those descriptors' text embeddings by optimal transport, and whose global features are distilled
from the CLIP image encoder. Shape, unlike clothes, survives a clothes change.

What we take: the descriptor labelling, as per-image scores recorded with every sample (`body_shape_scores`) and
summarised per identity for the dataset card; and the descriptor text embeddings (`shape_text_embeddings`) that
the trainer's `--shape-ot` aligns to. Not taken: the SMPL/3D branch (licensed body model, and unused in the
released code) and the student architecture.

Two scorers (`SHAPE_SCORERS`), one `ShapeScorer` protocol:
- `ClipShapeScorer` (`shape_clip.py`): CLIP3DReID's zero-shot labelling with any transformers CLIP (HF id or
  local folder).
- `GeometricShapeScorer` (`shape_geometry.py`): no model; ratios measured on the garment map (a parse), for
  machines without CLIP weights. It reads only what a rescaled crop can show; the other words get `UNKNOWN` (0.5).

Vocabulary: `vocab.body_shapes.BODY_SHAPE_WORDS`, SHAPY's 21 words; a sample's `body_shape_scores` follows it.
This module also reads scores (per identity, top words) and is the build's body-shape stage (`run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from dlcr_data.build.annotate.shape_clip import ClipShapeScorer
from dlcr_data.build.annotate.shape_geometry import UNKNOWN, GeometricShapeScorer
from dlcr_data.build.parse import load_garment_map, load_image
from dlcr_data.files import write_json_atomic
from dlcr_data.manifest import read_json
from dlcr_data.records import Record, Skipped
from dlcr_data.vocab.body_shapes import BODY_SHAPE_WORDS, VOCABULARY

if TYPE_CHECKING:
    from dlcr_data.build.context import BuildContext


class ShapeScorer(Protocol):
    method: str  # recorded with the scores: "clip:<model ref>" or "geometry"

    def score(self, images: Sequence[Image.Image], garment_maps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """(N, len(BODY_SHAPE_WORDS)) float32 in [0, 1], vocabulary order; 0.5 = no evidence either way."""
        ...


SHAPE_SCORERS: dict[str, type[ShapeScorer]] = {cls.name: cls for cls in (GeometricShapeScorer, ClipShapeScorer)}


def scorer_name(body_shape: str) -> str:
    """The scorer a `--body-shape` value names: a registered name ("geometry"), else a CLIP model."""
    return body_shape if body_shape in SHAPE_SCORERS else ClipShapeScorer.name


# -- reading scores -----------------------------------------------------------------------------------------------
def mean_known(scores: np.ndarray) -> np.ndarray:
    """Per word, the mean over the rows of an (N, 21) array that measured it (score != `UNKNOWN`); `UNKNOWN` where
    none did. A geometric profile view says nothing about shoulder width, so it must not pull the mean to 0.5."""
    arr = np.asarray(scores, np.float64).reshape(-1, len(BODY_SHAPE_WORDS))
    known = arr != UNKNOWN
    count = known.sum(axis=0)
    total = np.where(known, arr, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), UNKNOWN)


def top_words(scores: np.ndarray, k: int = 3, min_score: float = UNKNOWN) -> list[str]:
    """The up to `k` highest-scoring words with a score above `min_score`, best first (ties: vocabulary order).

    `scores` is one (21,) vector or an (N, 21) array (reduced by `mean_known`). With the default `min_score`,
    only words that apply more likely than not are named, and a geometric `UNKNOWN` never is.
    """
    vec = np.asarray(scores, np.float64)
    if vec.ndim == 2 and vec.shape[1] == len(BODY_SHAPE_WORDS):
        vec = mean_known(vec)
    if vec.shape != (len(BODY_SHAPE_WORDS),):
        raise ValueError(f"scores of shape {vec.shape}; expected ({len(BODY_SHAPE_WORDS)},) or (N, 21)")
    order = np.argsort(-vec, kind="stable")
    return [BODY_SHAPE_WORDS[i] for i in order[:k] if vec[i] > min_score]


def summarise_identities(pids: Sequence[int], scores: np.ndarray, k: int = 3) -> dict[int, dict]:
    """Per identity, sorted by pid: {"images": n, "mean": {word: score (4 decimals)}, "top": top-k words}.

    "mean" is `mean_known` over the identity's images (unknowns left out), and "top" its `top_words`: scores
    are pooled before naming words, so one odd image does not name a word.
    """
    pids = [int(p) for p in pids]
    arr = np.asarray(scores, np.float64)
    if arr.shape != (len(pids), len(BODY_SHAPE_WORDS)) and not (len(pids) == 0 and arr.size == 0):
        raise ValueError(f"scores of shape {arr.shape} for {len(pids)} pids; expected ({len(pids)}, 21)")
    groups: dict[int, list[int]] = {}
    for row, pid in enumerate(pids):
        groups.setdefault(pid, []).append(row)
    out: dict[int, dict] = {}
    for pid in sorted(groups):
        mean = mean_known(arr[groups[pid]])
        out[pid] = {
            "images": len(groups[pid]),
            "mean": {w: round(float(v), 4) for w, v in zip(BODY_SHAPE_WORDS, mean, strict=True)},
            "top": top_words(mean, k),
        }
    return out


# -- the stage ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BodyShapes:
    """Body-shape scores of the source images: key -> scores over `BODY_SHAPE_WORDS`."""

    method: str
    vocabulary: str
    scores: dict[str, list[float]]
    top: dict[str, str] = field(default_factory=dict)  # key -> its top words, comma-separated (one per source)

    def __post_init__(self) -> None:
        self.top.update({key: ", ".join(top_words(np.asarray(row))) for key, row in self.scores.items()})

    def summary(self, pid_of: dict[str, int]) -> dict:
        """Per identity (`pid_of`: key -> pid): image count, mean score per word, top words (for the card)."""
        keys = sorted(self.scores)
        per_pid = summarise_identities([pid_of[k] for k in keys], np.array([self.scores[k] for k in keys]))
        return {
            "method": self.method,
            "vocabulary": self.vocabulary,
            "words": list(BODY_SHAPE_WORDS),
            "identities": {str(pid): value for pid, value in sorted(per_pid.items())},
        }


def _score_batch(ctx: BuildContext, scorer: ShapeScorer, batch: list[Record]) -> list[tuple[str, list[float]]]:
    """(key, scores rounded to 4 decimals) of the readable records of one batch."""
    loaded = [(r, image) for r in batch if not isinstance(image := load_image(ctx.root, r), Skipped)]
    if not loaded:  # unreadable now though they parsed: generation lists them as skipped
        return []
    chunk, images = [r for r, _ in loaded], [image for _, image in loaded]
    maps = [load_garment_map(ctx.masks, r.key) for r in chunk]
    rows = scorer.score(images, maps).tolist()
    return [(r.key, [round(x, 4) for x in row]) for r, row in zip(chunk, rows, strict=True)]


def run(ctx: BuildContext, records: list[Record]) -> BodyShapes:
    """Score every source image (split across processes); cached in `work/<dataset>/body_shape.json`."""
    from accelerate.utils import gather_object

    opts = ctx.opts
    path = ctx.work / "body_shape.json"
    cached = read_json(path)
    if cached is None:
        scorer = ctx.backends.shape_scorer.from_options(opts, ctx.spec)
        advance = ctx.reporter.stage("body shape", len(records))
        mine_scores: list[tuple[str, list[float]]] = []
        with ctx.state.split_between_processes(records) as mine:
            for i in range(0, len(mine), opts.batch_size):
                batch = mine[i : i + opts.batch_size]
                mine_scores += _score_batch(ctx, scorer, batch)
                advance(len(batch))  # after the work: the bar shows what is scored
        all_scores = dict(sorted(gather_object(mine_scores)))
        cached = {"method": scorer.method, "vocabulary": VOCABULARY, "scores": all_scores}
        del scorer
        if ctx.main():
            write_json_atomic(path, cached)
        ctx.reporter.done("body shape")
    ctx.state.wait_for_everyone()
    return BodyShapes(cached["method"], cached["vocabulary"], cached["scores"])
