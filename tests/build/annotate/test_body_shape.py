"""Body-shape scores (CLIP3DReID): the CLIP scorer on a tiny random CLIP, the geometric scorer on synthetic
figures and on the demo, whose true body traits are known."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build import BuildOptions, build
from dlcr_data.build.annotate.body_shape import (
    SHAPE_SCORERS,
    mean_known,
    scorer_name,
    summarise_identities,
    top_words,
)
from dlcr_data.build.annotate.shape_clip import ClipShapeScorer
from dlcr_data.build.annotate.shape_geometry import (
    MEASURED_WORDS,
    UNKNOWN,
    UNMEASURED_WORDS,
    GeometricShapeScorer,
    measure_shape,
)
from dlcr_data.build.parse import OracleParser
from dlcr_data.demo import DemoConfig
from dlcr_data.demo.plan import Plan
from dlcr_data.errors import UserError
from dlcr_data.pretrained import ModelNotFound
from dlcr_data.progress import Reporter
from dlcr_data.vocab.body_shapes import BODY_SHAPE_WORDS, WORD_INDEX, shape_text_embeddings
from dlcr_data.vocab.garments import CLASS_ID

N_WORDS = len(BODY_SHAPE_WORDS)
DEMO = DemoConfig(seed=0, num_ids=24, images_per_camera=2)


def random_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


# -- synthetic figures ------------------------------------------------------------------------------------------
def figure(
    shoulders: float = 0.25, hips: float = 0.2, legs: float = 0.49, limb: float = 0.045, top: str = "upper"
) -> np.ndarray:
    """A front-view person on a 128x64 map, in rectangles; widths and lengths are fractions of the figure height.

    Head (face), a trapezoid top from the shoulder line to the hip line, bare arms at the shoulders' outer edge,
    a hip band then two trouser legs, shoes. `top="dress"` draws the top as a dress down to the knees.
    """
    m = np.zeros((128, 64), np.uint8)
    y0, height, cx = 4, 120, 32

    def px(f: float) -> int:
        return round(f * height)

    bottom = y0 + height
    shoulder_y, hip_y = y0 + px(0.16), bottom - px(legs)
    m[y0 : y0 + px(0.13), cx - px(0.05) : cx + px(0.05)] = CLASS_ID["face"]
    m[y0 + px(0.13) : shoulder_y, cx - px(0.03) : cx + px(0.03)] = CLASS_ID["face"]  # neck, as the demo labels it
    core = shoulders / 2 - limb
    for y in range(shoulder_y, hip_y):  # torso: from the inner edge of the arms to the hips
        half = px(core + (hips / 2 - core) * (y - shoulder_y) / max(1, hip_y - shoulder_y))
        m[y, cx - half : cx + half] = CLASS_ID["upper"]
    for side in (-1, 1):  # bare arms
        x0, x1 = sorted((cx + side * px(core), cx + side * px(shoulders / 2)))
        m[shoulder_y : shoulder_y + px(0.35), x0:x1] = CLASS_ID["skin"]
    m[hip_y : hip_y + px(0.06), cx - px(hips / 2) : cx + px(hips / 2)] = CLASS_ID["lower"]
    leg = px(1.3 * limb)
    for side in (-1, 1):
        lx = cx + side * px(hips / 4)
        m[hip_y : bottom - px(0.04), lx - leg // 2 : lx - leg // 2 + leg] = CLASS_ID["lower"]
        m[bottom - px(0.04) : bottom, lx - leg // 2 - 1 : lx - leg // 2 + leg + 1] = CLASS_ID["shoes"]
    if top == "dress":
        m[np.isin(m, [CLASS_ID["upper"], CLASS_ID["lower"]]) & (np.arange(128)[:, None] < hip_y + px(0.25))] = CLASS_ID[
            "dress"
        ]
    return m


def geometric(maps: list[np.ndarray]) -> np.ndarray:
    return GeometricShapeScorer().score(None, maps)


def word(scores: np.ndarray, name: str) -> np.ndarray:
    return scores[..., WORD_INDEX[name]]


def test_broad_vs_narrow_shoulders():
    broad, narrow = geometric([figure(shoulders=0.31), figure(shoulders=0.21)])
    assert word(broad, "Broad Shoulders") > 0.8 and word(narrow, "Broad Shoulders") < 0.2
    # Same hips: the narrow-shouldered figure is the pear-shaped one.
    assert word(narrow, "Pear Shaped") > word(broad, "Pear Shaped")


def test_long_vs_short_legs():
    long_, short = geometric([figure(legs=0.55), figure(legs=0.42)])
    assert word(long_, "Long Legs") > 0.9 and word(short, "Long Legs") < 0.1
    assert word(short, "Long Torso") > word(long_, "Long Torso")  # the same height, shared differently
    ratios = measure_shape(figure(legs=0.55))
    assert ratios["leg_length"] == pytest.approx(0.55, abs=0.02)


def test_wide_vs_thin_silhouette():
    big, thin = geometric([figure(0.30, 0.25, limb=0.06), figure(0.21, 0.16, limb=0.035)])
    assert word(big, "Big") > 0.5 > word(thin, "Big")
    for slender in ("Delicate Build", "Petite", "Skinny Arms", "Skinny Legs"):
        assert word(thin, slender) > word(big, slender), slender


def test_unreadable_words_are_unknown():
    maps = [figure(), figure(shoulders=0.31), np.zeros((128, 64), np.uint8), figure(0.28, top="dress")]
    scores = geometric(maps)
    assert scores.shape == (4, N_WORDS) and scores.dtype == np.float32
    unmeasured = [WORD_INDEX[w] for w in UNMEASURED_WORDS]
    assert set(UNMEASURED_WORDS) >= {"Tall", "Short", "Feminine", "Masculine", "Muscular", "Average"}
    assert set(MEASURED_WORDS) >= {"Big", "Broad Shoulders", "Long Legs", "Long Torso"}
    assert (scores[:, unmeasured] == UNKNOWN).all()
    assert (scores[2] == UNKNOWN).all()  # nothing to measure
    dress = scores[3]
    assert word(dress, "Long Legs") == UNKNOWN and word(dress, "Long Torso") == UNKNOWN  # hips hidden
    assert word(dress, "Broad Shoulders") != UNKNOWN
    assert word(scores[0], "Long Neck") == UNKNOWN  # the neck is labelled face: no bare neck to measure
    assert top_words(scores[2]) == []  # unknowns are never named


def test_side_view_leaves_widths_unknown():
    profile = figure(shoulders=0.14, hips=0.12)  # about a profile's width: breadth cannot be read
    scores = geometric([profile])[0]
    assert measure_shape(profile)["side_view"] == 1.0
    for name in ("Big", "Broad Shoulders", "Pear Shaped", "Slim Waist", "Skinny Legs"):
        assert word(scores, name) == UNKNOWN, name
    assert word(scores, "Long Legs") != UNKNOWN  # lengths still read


def test_geometric_scorer_needs_maps():  # its speed is measured in bench/related_methods.py, not here
    with pytest.raises(ValueError, match="garment maps"):
        GeometricShapeScorer().score(random_images([(64, 128)]))
    with pytest.raises(ValueError, match="1 images but 2"):
        GeometricShapeScorer().score(random_images([(64, 128)]), [figure(), figure()])


# -- the demo: correlation with the true traits -------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_scores(demo_root_for) -> tuple[list[int], np.ndarray]:
    """Geometric scores of every demo image, from the shipped masks mapped to canonical classes as the oracle
    parser does."""
    root = demo_root_for(DEMO)
    lut = OracleParser("demo").lut
    pids, maps = [], []
    for path in sorted((root / "masks").rglob("*.png")):
        with Image.open(path) as im:
            maps.append(lut[np.asarray(im)])
        pids.append(int(path.name.split("_")[0]))
    return pids, geometric(maps)


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


@pytest.mark.parametrize(
    ("name", "trait", "minimum"), [("Broad Shoulders", "shoulders", 0.7), ("Long Legs", "legs", 0.5)]
)
def test_geometric_scores_follow_the_demo_traits(demo_scores, name, trait, minimum):
    pids, scores = demo_scores
    summary = summarise_identities(pids, scores)
    people = Plan(DEMO).people
    assert sorted(summary) == sorted(people)
    per_id = [summary[pid]["mean"][name] for pid in sorted(summary)]
    truth = [getattr(people[pid].traits, trait) for pid in sorted(summary)]
    assert pearson(per_id, truth) > minimum  # measured: 0.98 (shoulders), 0.80 (legs)


def test_demo_unknowns_and_top_words(demo_scores):
    pids, scores = demo_scores
    assert (scores[:, [WORD_INDEX[w] for w in UNMEASURED_WORDS]] == UNKNOWN).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    summary = summarise_identities(pids, scores)
    assert all(set(v["top"]) <= set(MEASURED_WORDS) for v in summary.values())
    assert sum(v["images"] for v in summary.values()) == len(pids)


# -- CLIP -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_scorer(tiny_clip) -> ClipShapeScorer:
    return ClipShapeScorer(str(tiny_clip), batch_size=2)


def test_clip_scores_shape_range_and_method(clip_scorer, tiny_clip):
    images = random_images([(64, 128), (32, 32), (50, 120), (128, 64), (40, 100)])
    scores = clip_scorer.score(images, None)
    assert scores.shape == (5, N_WORDS) and scores.dtype == np.float32
    assert ((scores > 0) & (scores < 1)).all()
    assert not np.allclose(scores[0], scores[1])  # the image matters
    assert clip_scorer.method == f"clip:{tiny_clip}"
    assert clip_scorer.device == "cpu" and clip_scorer.model.dtype == torch.float32


def test_clip_scores_are_deterministic_and_batch_independent(clip_scorer, tiny_clip):
    images = random_images([(64, 128)] * 3 + [(48, 96)] * 2, seed=1)
    a = clip_scorer.score(images)
    again = ClipShapeScorer(str(tiny_clip), batch_size=5).score(images)
    solo = np.concatenate([clip_scorer.score([im]) for im in images])
    np.testing.assert_array_equal(a, clip_scorer.score(images))
    np.testing.assert_allclose(a, again, atol=1e-5)
    np.testing.assert_allclose(a, solo, atol=1e-5)


def test_clip_score_is_the_centred_sigmoid_of_cosines(clip_scorer, tiny_clip):
    images = random_images([(64, 128), (64, 128)], seed=2)
    cos = clip_scorer.similarities(images).astype(np.float64)
    t = clip_scorer.temperature
    assert t == pytest.approx(float(clip_scorer.model.logit_scale.detach().exp()))
    expected = 1 / (1 + np.exp(-t * (cos - cos.mean(axis=1, keepdims=True))))
    np.testing.assert_allclose(clip_scorer.score(images), expected, atol=1e-5)
    # A higher temperature spreads the same ranking further from 0.5.
    sharp = ClipShapeScorer(str(tiny_clip), temperature=10 * t).score(images)
    assert np.abs(sharp - 0.5).mean() > np.abs(expected - 0.5).mean()
    assert (np.sign(sharp - 0.5) == np.sign(expected - 0.5)).all()


def test_shape_text_embeddings_are_unit_rows_usable_as_targets(clip_scorer):
    emb = shape_text_embeddings(clip_scorer.model, clip_scorer.processor)
    assert emb.shape == (N_WORDS, clip_scorer.model.config.projection_dim) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(N_WORDS))
    torch.testing.assert_close(emb, clip_scorer.text_embeddings)
    # Not an inference tensor: it can enter a training graph as a fixed target.
    weight = torch.randn(emb.shape[1], 4, requires_grad=True)
    (emb @ weight).sum().backward()
    assert weight.grad is not None and not emb.requires_grad
    two = shape_text_embeddings(clip_scorer.model, clip_scorer.processor, ["Tall", "Short"], "a {word} person")
    assert two.shape == (2, emb.shape[1]) and not torch.allclose(two[0], emb[WORD_INDEX["Tall"]])


def test_bad_clip_ref_is_one_line_model_not_found(tmp_path):
    for ref in ("no-such-org/no-such-clip", str(tmp_path / "missing"), str(tmp_path)):  # id, no path, empty dir
        with pytest.raises(ModelNotFound) as info:
            ClipShapeScorer(ref)
        assert isinstance(info.value, UserError)
        assert "\n" not in str(info.value) and "--body-shape" in str(info.value)


def scorer_for(body_shape: str, **options):
    """The scorer a build with `--body-shape body_shape` uses (registry, then `from_options`)."""
    opts = BuildOptions("demo", Path("out"), body_shape=body_shape, **options)
    return SHAPE_SCORERS[scorer_name(body_shape)].from_options(opts, loaders.get("demo"))


def test_body_shape_option_picks_the_scorer(tiny_clip):
    geometry = scorer_for("geometry", batch_size=4)  # inference options are ignored
    assert isinstance(geometry, GeometricShapeScorer) and geometry.method == "geometry"
    clip = scorer_for(str(tiny_clip))  # any other value is a CLIP model
    assert isinstance(clip, ClipShapeScorer) and clip.method == f"clip:{tiny_clip}"
    assert ClipShapeScorer(str(tiny_clip), temperature=5.0).temperature == 5.0
    with pytest.raises(UserError, match=re.escape("{word}")):
        ClipShapeScorer(str(tiny_clip), template="a photo of a person")


# -- reading scores ---------------------------------------------------------------------------------------------
def vector(**scores: float) -> np.ndarray:
    out = np.full(N_WORDS, UNKNOWN, np.float32)
    for name, value in scores.items():
        out[WORD_INDEX[name.replace("_", " ")]] = value
    return out


def test_top_words_orders_and_skips_unknowns():
    v = vector(Big=0.9, Tall=0.7, Long_Legs=0.7, Petite=0.2)
    assert top_words(v) == ["Big", "Long Legs", "Tall"]  # ties in vocabulary order
    assert top_words(v, k=1) == ["Big"]
    assert top_words(vector(Petite=0.2)) == []
    assert top_words(np.stack([vector(Big=0.9), vector(Big=0.3, Tall=0.8)])) == ["Tall", "Big"]
    with pytest.raises(ValueError, match="shape"):
        top_words(np.zeros(5))


def test_summarise_identities_aggregates_per_identity():
    scores = np.stack([vector(Big=0.9), vector(Big=0.7, Tall=0.6), vector(Petite=0.8), vector(Big=0.1)])
    summary = summarise_identities([3, 3, 1, 7], scores, k=2)
    assert list(summary) == [1, 3, 7]
    assert summary[3]["images"] == 2 and summary[1]["images"] == 1
    assert summary[3]["mean"]["Big"] == pytest.approx(0.8)
    assert summary[3]["mean"]["Tall"] == pytest.approx(0.6)  # one image measured it: the other's 0.5 is ignored
    assert summary[3]["mean"]["Average"] == UNKNOWN
    assert list(summary[3]["mean"]) == list(BODY_SHAPE_WORDS)
    assert summary[3]["top"] == ["Big", "Tall"] and summary[1]["top"] == ["Petite"] and summary[7]["top"] == []
    assert summarise_identities([], np.zeros((0, N_WORDS))) == {}
    assert summarise_identities([], np.array([])) == {}
    with pytest.raises(ValueError, match="pids"):
        summarise_identities([1, 2], scores)
    np.testing.assert_allclose(mean_known(scores[:2]), [summary[3]["mean"][w] for w in BODY_SHAPE_WORDS])


def test_scores_are_json_ready():
    """build.py stores rows with `.tolist()` and names words from them: plain floats in [0, 1]."""
    rows = geometric([figure(shoulders=0.3)]).tolist()
    assert isinstance(rows[0][0], float) and len(rows[0]) == N_WORDS
    assert "Broad Shoulders" in top_words(np.asarray(rows[0]))


def test_a_model_that_is_not_clip_is_refused(tmp_path):
    """`CLIPModel.from_pretrained` would load any folder with random CLIP weights and only warn."""
    from transformers import ResNetConfig, ResNetModel

    from dlcr_data.errors import UserError

    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1])).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="not CLIP"):
        ClipShapeScorer(str(tmp_path))


# -- the stage's progress bar -------------------------------------------------------------------------------------
class Recording(Reporter):
    """Calls `on_advance(stage, n)` at each advance."""

    def __init__(self, on_advance) -> None:
        self.on_advance = on_advance

    def stage(self, name: str, total: int):
        return lambda n: self.on_advance(name, n)


def test_the_body_shape_bar_advances_after_its_batch_is_scored(tiny_demo, tmp_path, monkeypatch):
    """5 sources in batches of 2: at each advance the images it counts are already scored (it used to advance
    first, so the bar ran a batch ahead of the work)."""
    scored: list[int] = []
    score = GeometricShapeScorer.score

    def counting(self, images, garment_maps=None):
        out = score(self, images, garment_maps)
        scored.append(len(images))
        return out

    monkeypatch.setattr(GeometricShapeScorer, "score", counting)
    advanced: list[int] = []
    seen: list[tuple[int, int]] = []  # (images scored, images advanced) at each body-shape advance

    def on_advance(stage: str, n: int) -> None:
        if stage == "body shape":
            advanced.append(n)
            seen.append((sum(scored), sum(advanced)))

    opts = BuildOptions(
        "demo", tmp_path / "out", root=str(tiny_demo), variants=1, limit=5, batch_size=2, body_shape="geometry"
    )
    build(opts, Recording(on_advance))
    assert seen == [(2, 2), (4, 4), (5, 5)]
