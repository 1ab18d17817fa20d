"""The identity gate: prototypes, rank-1 and threshold tests, the outside-mask check, both embedder paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlcr_data import loaders
from dlcr_data.build.annotate.gate import DEFAULT_THRESHOLD, FALLBACK_SIZE, GateDecision, IdentityGate, outside_changed
from dlcr_data.build.generate import GenerationRequest
from dlcr_data.build.generate.recolor import RecolorGenerator
from dlcr_data.demo.labels import LOWER, UPPER
from dlcr_data.errors import UserError
from dlcr_data.loaders.demo import Demo
from dlcr_data.pretrained import ModelNotFound
from dlcr_data.reid.checkpoints import save_checkpoint
from dlcr_data.reid.data import normalize, to_uint8
from dlcr_data.reid.model import ReIDConfig, ReIDModel

SIZE = (64, 32)  # re-ID input (H, W)


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tiny_demo) -> dict:
    """The tiny demo's train split: 32 images of 3 identities, with clothes masks (upper + lower garments)."""
    root = tiny_demo
    records = loaders.load("demo", root)["train"]
    images = [Image.open(root / r.path).convert("RGB") for r in records]
    masks = [np.isin(np.asarray(Image.open(Demo().mask_path(root, r))), (UPPER, LOWER)) for r in records]
    pids = [r.pid for r in records]
    first = {}  # pid -> index of its first image
    for i, pid in enumerate(pids):
        first.setdefault(pid, i)
    return {"images": images, "masks": masks, "pids": pids, "first": first}


@pytest.fixture(scope="module")
def checkpoint(demo, tmp_path_factory) -> Path:
    """A scratch re-ID model whose BatchNorms are calibrated on the demo images (no training), saved as a
    checkpoint: like a trained BN-neck its features are centred, so cosines spread over [-1, 1]."""
    config = ReIDConfig(scratch="resnet-tiny", num_classes=3, image_size=SIZE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ReIDModel(config)
    x = normalize(torch.stack([to_uint8(im, SIZE) for im in demo["images"]]))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: the running stats become the data's statistics
    model.train()
    with torch.no_grad():
        model(torch.cat([x, x.flip(-1)]))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "epoch-0001", model.eval(), config, epoch=1)


def make_gate(ref: Path | str, **kw) -> IdentityGate:
    return IdentityGate(str(ref), device="cpu", **kw)


def single_image_prototypes(gate: IdentityGate, demo: dict) -> list[int]:
    """Fit each identity's prototype on its first image only (its feature exactly); returns those indices."""
    idx = list(demo["first"].values())
    gate.fit([demo["images"][i] for i in idx], [demo["pids"][i] for i in idx])
    return idx


def check_indices(gate: IdentityGate, demo: dict, idx: list[int], pids: list[int] | None = None) -> list:
    """Check source images as their own 'generated' variants (labelled `pids`, default their own)."""
    images, masks = [demo["images"][i] for i in idx], [demo["masks"][i] for i in idx]
    return gate.check(images, images, masks, pids or [demo["pids"][i] for i in idx])


# -- re-ID checkpoint path --------------------------------------------------------------------------------------
def test_source_passes_rank1_with_its_own_prototype(checkpoint, demo):
    gate = make_gate(checkpoint)
    assert gate.kind == "reid-checkpoint" and gate.model_id == str(checkpoint)
    idx = single_image_prototypes(gate, demo)
    assert gate.pids == (3, 5, 6) and gate.prototypes.shape[0] == 3
    for i, d in zip(idx, check_indices(gate, demo, idx), strict=True):
        assert isinstance(d, GateDecision)
        assert d.score == pytest.approx(1.0, abs=1e-5) and d.rank1 and d.best_pid == demo["pids"][i]
        assert d.keep and d.reason == "" and d.outside_changed == 0.0


def test_other_identity_with_wrong_pid_is_not_rank1(checkpoint, demo):
    gate = make_gate(checkpoint, threshold=-1.0)  # only the rank-1 test can fail
    single_image_prototypes(gate, demo)
    other = demo["first"][5]
    [d] = check_indices(gate, demo, [other], pids=[3])
    assert not d.keep and not d.rank1 and d.best_pid == 5 and d.best_score == pytest.approx(1.0, abs=1e-5)
    assert d.score < 0.99
    assert d.reason == "not rank-1 (best: pid 5 at 1.000)"

    lenient = make_gate(checkpoint, threshold=-1.0, require_rank1=False)
    single_image_prototypes(lenient, demo)
    [d] = check_indices(lenient, demo, [other], pids=[3])
    assert d.keep and not d.rank1 and d.reason == ""  # still reported, no longer a reason


def test_threshold_semantics(checkpoint, demo):
    everything = list(range(len(demo["pids"])))
    probe = make_gate(checkpoint, threshold=-1.0, require_rank1=False)
    probe.fit(demo["images"], demo["pids"])
    scores = [d.score for d in check_indices(probe, demo, everything)]
    assert all(d.keep for d in check_indices(probe, demo, everything))
    i = min(everything, key=lambda j: abs(scores[j] - 0.3))  # a middling score: room on both sides
    s = scores[i]
    assert -0.9 < s < 0.9

    above = round(s + 0.05, 3)
    gate = make_gate(checkpoint, threshold=above, require_rank1=False)
    gate.pids, gate.prototypes = probe.pids, probe.prototypes  # the same prototypes, another threshold
    [d] = check_indices(gate, demo, [i])
    assert not d.keep and d.score == pytest.approx(s, abs=1e-6)
    assert d.reason == f"similarity {s:.3f} < {above:.3f}"

    below = round(s - 0.05, 3)
    gate = make_gate(checkpoint, threshold=below, require_rank1=False)
    gate.pids, gate.prototypes = probe.pids, probe.prototypes  # the same prototypes, another threshold
    [d] = check_indices(gate, demo, [i])
    assert d.keep and d.reason == ""

    default = make_gate(checkpoint)  # the default threshold rejects every image whose own cosine is below it
    default.fit(demo["images"], demo["pids"])
    decisions = check_indices(default, demo, everything)
    assert default.threshold == DEFAULT_THRESHOLD
    assert [d.keep for d in decisions] == [d.score >= DEFAULT_THRESHOLD and d.rank1 for d in decisions]
    assert any(d.keep for d in decisions) and any(not d.keep for d in decisions)


def test_every_failed_test_is_listed(checkpoint, demo):
    gate = make_gate(checkpoint, threshold=0.999)
    single_image_prototypes(gate, demo)
    i = demo["first"][5]
    src = demo["images"][i]
    bad = np.asarray(src).copy()
    bad[~demo["masks"][i]] ^= 0x80  # every outside pixel changes by 128
    [d] = gate.check([Image.fromarray(bad)], [src], [demo["masks"][i]], [3])
    parts = d.reason.split("; ")
    assert [p.split(" ")[0] for p in parts] == ["similarity", "not", "outside"], d.reason
    assert parts[2] == "outside mask changed 1.000 > 0.010" and d.outside_changed == 1.0


# -- test splits: judged against their own source, no label ------------------------------------------------------
def test_an_unlabelled_variant_is_judged_against_its_source_only(checkpoint, demo):
    """pid None (a query/gallery variant, issue 11): the score is the cosine to its own source; no prototype, no
    rank-1 test, so no identity label can keep or drop it."""
    a, b = demo["first"][3], demo["first"][5]
    src, mask = demo["images"][a], demo["masks"][a]
    gate = make_gate(checkpoint)  # never fitted: an unlabelled check needs no prototypes
    [same] = gate.check([src], [src], [mask], [None])
    assert same.reference == "source" and same.keep and same.reason == ""
    assert same.score == pytest.approx(1.0, abs=1e-5) and same.rank1 is None and same.best_pid is None

    other = demo["images"][b]  # another person standing in for the variant: far from the source
    feats = gate.embed([other, src])
    cosine = float(feats[0] @ feats[1])
    strict = make_gate(checkpoint, threshold=round(cosine + 0.05, 3))
    [d] = strict.check([other], [src], [mask], [None])
    assert d.score == pytest.approx(cosine, abs=1e-5) and not d.keep
    assert d.reason.split("; ")[0] == f"similarity to source {cosine:.3f} < {strict.threshold:.3f}"

    # Whatever prototypes exist (any identities, any images), the unlabelled decision is the same.
    for fitted in (single_image_prototypes, lambda g, dm: g.fit(dm["images"][::-1], dm["pids"][::-1])):
        fitted(strict, demo)
        assert strict.check([other], [src], [mask], [None]) == [d]


def test_labelled_and_unlabelled_items_in_one_batch(checkpoint, demo):
    gate = make_gate(checkpoint, threshold=-1.0)
    single_image_prototypes(gate, demo)
    other, own = demo["first"][5], demo["first"][3]
    items = [other, own, own]  # the last two: variants of one source, whose image is embedded once
    images, masks = [demo["images"][i] for i in items], [demo["masks"][i] for i in items]
    embedded: list[int] = []
    embed = gate.embed
    gate.embed = lambda batch: (embedded.append(len(batch)), embed(batch))[1]
    labelled, *unlabelled = gate.check(images, images, masks, [3, None, None])
    assert embedded == [3, 1]  # the variants, then the one distinct unlabelled source
    alone = check_indices(gate, demo, [other], pids=[3])[0]  # as if checked alone: not rank-1 for pid 3
    assert labelled.reference == "identity" and not labelled.keep and not labelled.rank1 and labelled.best_pid == 5
    assert labelled.score == pytest.approx(alone.score, abs=1e-5) and labelled.reason == alone.reason
    for d in unlabelled:
        assert d.reference == "source" and d.keep and d.rank1 is None and d.score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(RuntimeError, match="before fit"):
        make_gate(checkpoint).check(images, images, masks, [3, None, None])  # a labelled item needs prototypes


# -- the outside-mask (silhouette) check ------------------------------------------------------------------------
def test_outside_mask_changes_are_detected(checkpoint, demo):
    gate = make_gate(checkpoint, threshold=-1.0)
    idx = single_image_prototypes(gate, demo)
    i = idx[0]
    src, mask, pid = demo["images"][i], demo["masks"][i], demo["pids"][i]
    assert 0 < mask.sum() < mask.size

    # A real generator composites through the mask: nothing outside changes, although the garments did.
    request = GenerationRequest(
        key="k", image=src, garment_map=_canonical_garments(mask), mask=mask,
        prompt="", negative_prompt="", target_text="green | red | white", seed=1,
    )  # fmt: skip
    [recoloured] = RecolorGenerator().generate([request])
    assert not np.array_equal(np.asarray(recoloured), np.asarray(src))
    [d] = gate.check([recoloured], [src], [mask], [pid])
    assert d.outside_changed == 0.0 and d.keep

    # An 8x8 block in the top-left corner (background) repainted: exactly those pixels count.
    edited = np.asarray(src).copy()
    block = np.zeros(mask.shape, bool)
    block[:8, :8] = True
    edited[block] ^= 0x80
    expected = (block & ~mask).sum() / (~mask).sum()
    assert expected > gate.outside_tolerance
    [d] = gate.check([Image.fromarray(edited)], [src], [mask], [pid])
    assert d.outside_changed == pytest.approx(expected) and not d.keep
    assert d.reason == f"outside mask changed {expected:.3f} > 0.010"

    # Differences up to pixel_tolerance (8) are noise (JPEG, resampling), one more is a change.
    shifted = Image.fromarray(np.clip(np.asarray(src, np.int16) + 8, 0, 255).astype(np.uint8))
    assert outside_changed(shifted, src, mask, 8) == 0.0
    assert outside_changed(shifted, src, mask, 7) > 0.5

    # Inside-only edits never count; a full mask leaves nothing outside to check.
    inside = np.asarray(src).copy()
    inside[mask] = 0
    assert outside_changed(Image.fromarray(inside), src, mask) == 0.0
    assert outside_changed(Image.fromarray(edited), src, np.ones_like(mask)) == 0.0
    with pytest.raises(ValueError, match="mask shape"):
        gate.check([src], [src], [mask[:-1]], [pid])


def _canonical_garments(mask: np.ndarray) -> np.ndarray:
    """The mask as canonical 'upper' garments, enough for the recolour generator."""
    from dlcr_data.vocab.garments import CLASS_ID

    return np.where(mask, CLASS_ID["upper"], CLASS_ID["background"]).astype(np.uint8)


# -- determinism ------------------------------------------------------------------------------------------------
def test_scores_are_deterministic_and_batch_size_independent(checkpoint, demo):
    subset = list(range(0, len(demo["pids"]), 3))  # 11 images of all 3 identities
    assert {demo["pids"][i] for i in subset} == {3, 5, 6}
    images, pids = [demo["images"][i] for i in subset], [demo["pids"][i] for i in subset]
    runs = []
    for batch_size in (64, 64, 4, 1):
        gate = make_gate(checkpoint, batch_size=batch_size)
        gate.fit(images, pids)
        runs.append([d.score for d in check_indices(gate, demo, subset)])
    assert runs[0] == runs[1]  # the same run twice: bit-identical
    for other in runs[2:]:
        assert other == pytest.approx(runs[0], abs=1e-5)


def test_fit_reports_progress_once_a_batch_is_embedded(checkpoint, demo):
    """The build's "gate prototypes" bar: each advance counts images already embedded (32 images, batches of 10)."""
    gate = make_gate(checkpoint, batch_size=10)
    embedded: list[int] = []
    embed = gate.embed
    gate.embed = lambda images: (embedded.append(len(images)), embed(images))[1]
    seen: list[tuple[int, int]] = []
    gate.fit(demo["images"], demo["pids"], progress=lambda n: seen.append((sum(embedded), n)))
    assert seen == [(10, 10), (20, 10), (30, 10), (32, 2)]


def test_prototypes_do_not_depend_on_input_order(checkpoint, demo):
    a, b = make_gate(checkpoint), make_gate(checkpoint)
    a.fit(demo["images"], demo["pids"])
    b.fit(demo["images"][::-1], demo["pids"][::-1])
    assert a.pids == b.pids and torch.allclose(a.prototypes, b.prototypes, atol=1e-6)
    assert torch.allclose(a.prototypes.norm(dim=1), torch.ones(3), atol=1e-6)
    feats, pids = a.embed(demo["images"]), torch.tensor(demo["pids"])
    for k, pid in enumerate(a.pids):  # the renormalised mean of the identity's unit features
        mean = feats[pids == pid].mean(0)
        assert torch.allclose(a.prototypes[k], mean / mean.norm(), atol=1e-6)


def test_misuse_is_refused(checkpoint, demo):
    gate = make_gate(checkpoint)
    img, mask = demo["images"][0], demo["masks"][0]
    with pytest.raises(RuntimeError, match="before fit"):
        gate.check([img], [img], [mask], [3])
    single_image_prototypes(gate, demo)
    with pytest.raises(ValueError, match=r"pid\(s\) 99 have no prototype.*3, 5, 6"):
        gate.check([img], [img], [mask], [99])
    with pytest.raises(ValueError, match="one source, mask and pid"):
        gate.check([img, img], [img], [mask], [3])
    with pytest.raises(ValueError, match="more images than its 1 pids"):
        gate.fit([img, img], [3])
    with pytest.raises(ValueError, match="fewer images than its 2 pids"):
        gate.fit([img], [3, 5])
    assert gate.check([], [], [], []) == []
    with pytest.raises(UserError, match=r"\[-1, 1\]"):
        make_gate(checkpoint, threshold=1.5)


# -- model references -------------------------------------------------------------------------------------------
def test_training_run_folder_uses_its_newest_checkpoint(checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(checkpoint, run / "checkpoints" / "epoch-0001")
    shutil.copytree(checkpoint, run / "checkpoints" / "epoch-0003")
    (run / "checkpoints" / "epoch-0004").mkdir()  # incomplete: no trainer_state.json
    assert make_gate(run).model_id == str(run / "checkpoints" / "epoch-0003")


def test_bad_model_references(checkpoint, tmp_path):
    with pytest.raises(ModelNotFound, match="--identity-gate"):
        make_gate("no-such-org/no-such-gate-model")  # tests run offline
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="--identity-gate"):
        make_gate(tmp_path / "empty")
    future = tmp_path / "future"
    shutil.copytree(checkpoint, future)
    meta = json.loads((future / "config.json").read_text())
    (future / "config.json").write_text(json.dumps(meta | {"format": "dlcr-data/reid-checkpoint/99"}))
    with pytest.raises(UserError, match="not supported"):
        make_gate(future)

    from transformers import BertConfig, BertModel

    text = tmp_path / "bert"
    cfg = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    BertModel(cfg).save_pretrained(text)
    with pytest.raises(UserError, match="does not embed images"):
        make_gate(text)


# -- transformers backbone path ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    path = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ViTModel(config).eval().save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_transformers_backbone_with_its_processor(tiny_vit, demo):
    gate = make_gate(tiny_vit)
    assert gate.kind == "transformers" and gate.model_id == str(tiny_vit)
    assert type(gate.embedder.processor).__name__ == "ViTImageProcessorPil"  # loaded back by from_pretrained
    feats = gate.embed(demo["images"][:4])
    assert feats.shape == (4, 16) and torch.allclose(feats.norm(dim=1), torch.ones(4), atol=1e-5)

    idx = single_image_prototypes(gate, demo)
    for d in check_indices(gate, demo, idx):
        assert d.keep and d.rank1 and d.score == pytest.approx(1.0, abs=1e-5)
    [d] = check_indices(gate, demo, [demo["first"][6]], pids=[5])
    assert not d.rank1 and "not rank-1 (best: pid 6 at 1.000)" in d.reason

    again = make_gate(tiny_vit, batch_size=1)
    assert torch.allclose(again.embed(demo["images"][:4]), feats, atol=1e-5)


def test_transformers_backbone_without_processor_uses_the_checkpoint_transform(tmp_path, demo):
    from transformers import ResNetConfig, ResNetModel

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ResNetModel(config).save_pretrained(tmp_path / "resnet")
    gate = make_gate(tmp_path / "resnet")
    assert gate.embedder.processor is None and gate.embedder.size == FALLBACK_SIZE
    feats = gate.embed(demo["images"][:3])
    assert feats.shape == (3, 16) and torch.allclose(feats.norm(dim=1), torch.ones(3), atol=1e-5)


def test_clip_like_models_use_their_image_features(tiny_clip, demo):
    gate = make_gate(tiny_clip)
    assert gate.embed(demo["images"][:2]).shape == (2, 16)  # the projection, not the vision tower's width
