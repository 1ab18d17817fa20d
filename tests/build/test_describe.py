"""The describe stage, offline: tiny random-weight LLaVA / LLaVA-NeXT / Llama saved and reloaded from temp dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build import BuildOptions
from dlcr_data.build.backends import lookup
from dlcr_data.build.describe import (
    DESCRIBERS,
    ColorDescriber,
    OracleDescriber,
    OutfitImages,
    OutfitText,
    VLMDescriber,
    cache_path,
    describe_outfits,
    group_outfits,
    parse_outfit_text,
    read_outfits,
)
from dlcr_data.build.describe.vlm import STRICT_SUFFIX, _spread
from dlcr_data.demo import DemoConfig
from dlcr_data.errors import UserError
from dlcr_data.loaders.base import Loaded
from dlcr_data.loaders.demo import Demo
from dlcr_data.pretrained import ModelNotFound
from dlcr_data.vocab.colors import find_colour
from dlcr_data.vocab.garments import CLASS_ID

# Demo mask label (0 bg, 1 hair, 2 face, 3 upper, 4 lower, 5 shoes, 6 arms, 7 legs) -> canonical class id.
DEMO_LUT = np.array(
    [CLASS_ID[c] for c in ("background", "hair", "face", "upper", "lower", "shoes", "skin", "skin")], np.uint8
)


# -- tiny models (built once per session in conftest.py) ------------------------------------------------------
@pytest.fixture(scope="module")
def model_dirs(tiny_llava, tiny_llava_next, tiny_llm) -> dict[str, str]:
    return {"vlm": str(tiny_llava), "next": str(tiny_llava_next), "llm": str(tiny_llm)}


@pytest.fixture(scope="module")
def describer(model_dirs) -> VLMDescriber:
    return VLMDescriber(model_dirs["vlm"], model_dirs["llm"], device="cpu", batch_size=4, max_new_tokens=12)


# -- demo data ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(demo_root_for) -> Loaded:
    config = DemoConfig(num_ids=6, images_per_camera=1)
    return Demo(config).load(demo_root_for(config))


def demo_outfits(demo: Loaded):
    """All outfits of the demo (every split), as lazy `OutfitRef`s reading the shipped masks."""
    records = {r.key: r for recs in demo.splits.values() for r in recs}

    def load_map(key: str) -> np.ndarray:
        with Image.open(Demo().mask_path(demo.root, records[key])) as im:
            return DEMO_LUT[np.asarray(im)]

    return group_outfits(records.values(), demo.root, load_map)


@pytest.fixture(scope="module")
def outfits(demo) -> list[OutfitImages]:
    return [ref.load() for ref in demo_outfits(demo)[:2]]


# -- the vlm backend ------------------------------------------------------------------------------------------
def test_vlm_garbage_answers_are_retried_then_replaced_by_colour(describer, outfits, model_dirs, monkeypatch):
    prompts: list[list[str]] = []
    real = describer._summarise_once
    monkeypatch.setattr(describer, "_summarise_once", lambda p: prompts.append(p) or real(p))

    results = describer.describe(outfits)

    assert [r.clothes_id for r in results] == [o.clothes_id for o in outfits]
    assert len(prompts) == 2  # one batched call per attempt; the second one strict
    assert not any(STRICT_SUFFIX in p for p in prompts[0]) and all(STRICT_SUFFIX in p for p in prompts[1])
    for outfit, res in zip(outfits, results, strict=True):
        assert res.attempts == 2
        assert res.fallback and "malformed" in res.fallback and "color" in res.fallback
        assert res.text == ColorDescriber().describe_one(outfit).text
        assert len(res.captions) == len(outfit.images) and res.captions_dropped == 0
        assert res.describer == "vlm" and res.models == {"vlm": model_dirs["vlm"], "llm": model_dirs["llm"]}
        assert parse_outfit_text(res.raw) is None


def test_vlm_well_formed_answer_is_used(describer, outfits, monkeypatch):
    answer = 'Sure! Here it is:\n"Top: Grey Hooded Sweatshirt | blue jeans | black sneakers."'
    monkeypatch.setattr(describer, "_summarise_once", lambda prompts: [answer] * len(prompts))
    res = describer.describe(outfits[:1])[0]
    assert (res.top, res.bottom, res.shoes) == ("grey hooded sweatshirt", "blue jeans", "black sneakers")
    assert res.fallback is None and res.attempts == 1 and res.raw == answer


def test_vlm_strict_retry_can_rescue(describer, outfits, monkeypatch):
    def fake(prompts):
        return ["red shirt | black jeans | white shoes" if STRICT_SUFFIX in p else "I think red." for p in prompts]

    monkeypatch.setattr(describer, "_summarise_once", fake)
    res = describer.describe(outfits[:1])[0]
    assert res.text == "red shirt | black jeans | white shoes" and res.attempts == 2 and res.fallback is None


def test_captions_per_outfit_picks_evenly_spaced_images(describer, outfits, monkeypatch):
    seen: list[int] = []
    monkeypatch.setattr(describer, "captions_per_outfit", 2)
    monkeypatch.setattr(describer, "caption", lambda images: seen.append(len(images)) or ["c"] * len(images))
    monkeypatch.setattr(describer, "_summarise_once", lambda p: ["a | b | c"] * len(p))
    results = describer.describe(outfits)
    assert seen == [2 * len(outfits)] and all(len(r.captions) == 2 for r in results)
    assert _spread(5, 3) == [0, 2, 4] and _spread(4, 2) == [0, 3] and _spread(2, None) == [0, 1]


def test_captions_over_the_context_are_dropped_evenly_and_counted(describer, outfits, monkeypatch):
    captions = [f"photo {i}: a person in a red shirt and black jeans" for i in range(10)]
    three = [captions[i] for i in _spread(10, 3)]
    budget = describer._prompt_tokens(describer._prompt(three, strict=True)) + describer.max_new_tokens
    monkeypatch.setattr(describer, "context_tokens", budget)
    assert describer.fit_captions(captions) == three == [captions[0], captions[4], captions[9]]

    monkeypatch.setattr(describer, "caption", lambda images: captions[: len(images)])
    monkeypatch.setattr(describer, "_summarise_once", lambda p: ["a | b | c"] * len(p))
    big = OutfitImages(
        "x", 1, [str(i) for i in range(10)], outfits[0].images[:1] * 10, outfits[0].garment_maps[:1] * 10
    )
    res = describer.describe([big])[0]
    assert res.captions == three and res.captions_dropped == 7 and res.fallback is None

    monkeypatch.setattr(describer, "context_tokens", describer.max_new_tokens + 5)  # not even one caption fits
    res = describer.describe([big])[0]
    assert res.captions == [] and res.attempts == 0 and "context" in res.fallback


@pytest.mark.parametrize("kind", ["vlm", "next"])
def test_left_padded_batches_caption_like_single_images(model_dirs, kind):
    d = VLMDescriber(model_dirs[kind], model_dirs["llm"], device="cpu", batch_size=4, max_new_tokens=8)
    rng = np.random.default_rng(0)
    shapes = [(64, 32), (32, 32), (32, 64), (48, 40)]  # H x W: NeXT gives each aspect its own token count
    images = [Image.fromarray(rng.integers(0, 255, (*s, 3), dtype=np.uint8)) for s in shapes]

    batched = d.caption(images)
    assert len(batched) == len(images)
    assert batched == [d.caption([im])[0] for im in images]
    if kind == "next":  # the batch really was padded, and right padding would change the captions
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
        prompt = d.processor.apply_chat_template(messages, add_generation_prompt=True)
        lengths = {len(d.processor(images=[im], text=[prompt])["input_ids"][0]) for im in images}
        assert len(lengths) > 1
        d.processor.tokenizer.padding_side = "right"
        assert d.caption(images) != batched


def test_bad_model_ids_give_one_line_errors(model_dirs):
    with pytest.raises(ModelNotFound) as err:
        VLMDescriber("no-such-org/no-such-vlm", model_dirs["llm"], device="cpu")
    assert "--vlm-model" in str(err.value) and "no-such-org/no-such-vlm" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelNotFound, match="--llm-model"):
        VLMDescriber(model_dirs["vlm"], "no-such-org/no-such-llm", device="cpu")


def test_llm_without_chat_template_is_refused(model_dirs, tmp_path):
    import shutil

    plain = shutil.copytree(model_dirs["llm"], tmp_path / "base-llm")
    (plain / "chat_template.jinja").unlink()
    with pytest.raises(UserError, match="no chat template"):
        VLMDescriber(model_dirs["vlm"], str(plain), device="cpu")


# -- parsing answers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("grey shirt | blue jeans | black shoes", ("grey shirt", "blue jeans", "black shoes")),
        ("Gray shirt| Blue jeans| Black shoes", ("gray shirt", "blue jeans", "black shoes")),  # the released format
        (
            "Here you go:\n- 'Red T-shirt | black shorts | white sneakers.'\nHope it helps",
            ("red t-shirt", "black shorts", "white sneakers"),
        ),
        ("Top: red top | Bottom: black skirt | Shoes: white boots", ("red top", "black skirt", "white boots")),
        (
            "| Top | Bottom | Shoes |\n|---|---|---|\n| **red coat** | grey trousers | brown boots |",
            ("red coat", "grey trousers", "brown boots"),
        ),
        ("1. navy jacket | khaki chinos | brown loafers", ("navy jacket", "khaki chinos", "brown loafers")),
    ],
)
def test_parse_outfit_text_accepts(answer, expected):
    assert parse_outfit_text(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "The person wears a red shirt, black jeans and white shoes.",
        "red shirt | black jeans",
        "red shirt | black jeans | white shoes | a hat",
        "red shirt |  | white shoes",
        "top | bottom | shoes",
        "a " * 13 + "shirt | black jeans | white shoes",
        "1. red shirt\n2. black jeans\n3. white shoes",  # the original release's list format
    ],
)
def test_parse_outfit_text_rejects(answer):
    assert parse_outfit_text(answer) is None


# -- cpu backends ---------------------------------------------------------------------------------------------
def test_color_describer_names_demo_colours(demo):
    truth = Demo().outfit_texts(demo.root)
    results = [ColorDescriber().describe_one(ref.load()) for ref in demo_outfits(demo)]
    assert len(results) == len(truth)
    agree = {
        part: np.mean(
            [find_colour(getattr(r, part)) == find_colour(truth[r.clothes_id].split("|")[i]) for r in results]
        )
        for i, part in enumerate(("top", "bottom", "shoes"))
    }
    # Measured on this render: top 12/12, bottom and shoes 10/12 (khaki vs beige, maroon vs red under tinted light).
    assert agree["top"] >= 0.8 and agree["bottom"] >= 0.6 and agree["shoes"] >= 0.6, agree
    assert all(r.top.endswith(" top") and r.bottom.endswith(" bottoms") for r in results)
    assert all(r.models == {} and r.fallback is None and r.describer == "color" for r in results)


def test_color_describer_absent_region_and_dress():
    image = Image.new("RGB", (4, 4), (200, 34, 40))
    garment_map = np.full((4, 4), CLASS_ID["dress"], np.uint8)
    garment_map[0, 0] = CLASS_ID["upper"]
    small_map = np.full((2, 2), CLASS_ID["dress"], np.uint8)  # a map at another size is resized (nearest)
    res = ColorDescriber().describe_one(OutfitImages("d", 1, ["a", "b"], [image, image], [garment_map, small_map]))
    assert res.text == "red dress | bottoms | shoes"
    assert find_colour(res.shoes) is None


def test_oracle_returns_demo_texts(demo):
    oracle = OracleDescriber.for_dataset("demo", demo.root)
    refs = demo_outfits(demo)
    truth = Demo().outfit_texts(demo.root)
    results = oracle.describe([OutfitImages(r.clothes_id, r.pid, list(r.keys), [], []) for r in refs])
    assert {r.clothes_id: r.text for r in results} == truth
    with pytest.raises(UserError, match="ltcc"):
        OracleDescriber.for_dataset("ltcc", demo.root)
    with pytest.raises(UserError, match="x_9"):
        oracle.describe([OutfitImages("x_9", 9, [], [], [])])


def describer_for(name: str, dataset: str, **options):
    """The describer a build with these options uses (registry lookup, then `from_options`)."""
    opts = BuildOptions(dataset, Path("out"), describer=name, **options)
    return lookup(DESCRIBERS, name, "describer").from_options(opts, loaders.get(dataset))


def test_describer_registry(demo):
    assert isinstance(describer_for("color", "ltcc", batch_size=2), ColorDescriber)  # inference options are ignored
    assert isinstance(describer_for("Oracle", "demo", root=str(demo.root)), OracleDescriber)
    with pytest.raises(UserError, match="unknown describer"):
        describer_for("gpt", "demo")
    with pytest.raises(UserError, match="--vlm-model"):
        describer_for("color", "demo", vlm_model="some/model")
    with pytest.raises(UserError, match="ships no outfit texts"):
        describer_for("oracle", "prcc")


# -- the stage ------------------------------------------------------------------------------------------------
class Counting:
    """A describer that counts the outfits it was asked about."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.models, self.seen = inner, inner.name, inner.models, []

    def describe(self, outfits):
        self.seen.extend(o.clothes_id for o in outfits)
        return self.inner.describe(outfits)


def test_describe_outfits_writes_jsonl_and_resumes_from_cache(demo, tmp_path):
    refs = demo_outfits(demo)
    out, cache = tmp_path / "work" / "outfits.jsonl", tmp_path / "work" / "outfits"
    first = Counting(ColorDescriber())
    share = refs[::2]  # one process's share of a distributed run: cache only, no jsonl
    describe_outfits(share, first, None, cache_dir=cache)
    assert first.seen == [r.clothes_id for r in share] and not out.exists()

    done: list[int] = []
    texts = describe_outfits(reversed(refs), first, out, cache_dir=cache, progress=done.append)
    ids = sorted(r.clothes_id for r in refs)
    assert sorted(first.seen) == ids and done == [1] * len(ids) and [t.clothes_id for t in texts] == ids
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["clothes_id"] for x in lines] == ids  # one line per outfit, sorted
    assert all(x["describer"] == "color" and x["models"] == {} and x["text"].count("|") == 2 for x in lines)
    assert read_outfits(out) == {t.clothes_id: t for t in texts}
    assert len(list(cache.glob("*.json"))) == len(ids)

    again = Counting(ColorDescriber())
    assert describe_outfits(refs, again, out, cache_dir=cache) == texts and again.seen == []

    cache_path(cache, ids[0]).unlink()  # a lost result is redone alone
    again = Counting(ColorDescriber())
    describe_outfits(refs, again, out, cache_dir=cache)
    assert again.seen == [ids[0]]

    oracle = Counting(OracleDescriber(Demo().outfit_texts(demo.root)))  # another backend does not reuse the cache
    texts = describe_outfits(refs, oracle, out, cache_dir=cache)
    assert sorted(oracle.seen) == ids and {t.describer for t in read_outfits(out).values()} == {"oracle"}


def test_outfit_text_json_round_trip():
    t = OutfitText(
        "3_1", 3, "red top", "black bottoms", "white shoes", "vlm", {"vlm": "a", "llm": "b"}, "why", ["c"], "r", 2
    )
    line = t.to_json()
    assert json.loads(line)["text"] == "red top | black bottoms | white shoes"
    assert OutfitText.from_json(line) == t == OutfitText.from_json(json.loads(line))
    with pytest.raises(UserError, match="run the describe stage"):
        read_outfits(Path("/nonexistent/outfits.jsonl"))


def test_group_outfits_is_lazy_and_sorted(demo):
    calls: list[str] = []
    records = [r for recs in demo.splits.values() for r in recs]
    refs = group_outfits(records, demo.root, lambda key: calls.append(key) or np.zeros((1, 1), np.uint8))
    assert calls == [] and [(r.pid, r.clothes_id) for r in refs] == sorted({(r.pid, r.clothes_id) for r in records})
    assert sum(len(r.keys) for r in refs) == len(records)
    loaded = refs[0].load()
    assert calls == list(refs[0].keys) and len(loaded.images) == len(loaded.garment_maps) == len(refs[0].keys)
    assert all(im.mode == "RGB" for im in loaded.images)
