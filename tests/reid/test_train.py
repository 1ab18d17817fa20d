"""The re-ID trainer on a tiny demo: losses, DLCR pairing + progressive learning, sampler, checkpoints, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from dlcr_data.build import BuildOptions, build
from dlcr_data.errors import UserError
from dlcr_data.pretrained import ModelNotFound
from dlcr_data.reid.checkpoints import load_checkpoint
from dlcr_data.reid.config import TrainConfig
from dlcr_data.reid.data import LabelMaps, TrainSet, pid2clothes, real_mask
from dlcr_data.reid.features import extract_features, extract_images
from dlcr_data.reid.losses import ClothesAdversarialLoss, CosFaceLoss, TripletLoss
from dlcr_data.reid.model import ReIDConfig, ReIDModel
from dlcr_data.reid.sampler import IdentitySampler, PairedBatchSampler, ProgressiveSchedule
from dlcr_data.reid.train import train

SIZE = (64, 32)  # the tiny demo (conftest.py): 32 train images, 3 identities, 6 outfits


@pytest.fixture(scope="module")
def expanded(tiny_demo, tmp_path_factory) -> Path:
    """3 variants for the first 24 of the 32 train images: the other 8 have none (they pair with themselves)."""
    out = tmp_path_factory.mktemp("build")
    build(BuildOptions("demo", out, root=str(tiny_demo), variants=3, limit=24))
    return out


def config(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(dataset="demo", root=str(root), out=str(out), scratch="resnet-tiny", image_size=SIZE)
    base |= dict(epochs=2, batch_p=2, batch_k=4, cal_start_epoch=1)
    return TrainConfig(**(base | kw))


def history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())


# -- training runs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["baseline", "cal"])
@pytest.mark.parametrize("with_variants", [False, True], ids=["plain", "dlcr"])
def test_two_epoch_training(tiny_demo, expanded, tmp_path, method, with_variants):
    out = tmp_path / "run"
    ckpt = train(config(tiny_demo, out, method=method, expanded=str(expanded) if with_variants else None))
    assert ckpt == out / "checkpoints" / "epoch-0002"
    assert {"model.safetensors", "config.json", "trainer_state.json", "optimizer.safetensors"} <= {
        p.name for p in ckpt.iterdir()
    }
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pth"))
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    hist = history(out)
    assert [h["epoch"] for h in hist] == [1, 2]
    for h in hist:
        assert all(v == v and abs(v) < 1e6 for k, v in h.items() if k.startswith("loss"))
    if method == "cal":
        assert "loss_clothes" in hist[0] and "loss_adv" not in hist[0] and "loss_adv" in hist[1]  # CAL from epoch 1
        assert (ckpt / "clothes_classifier.safetensors").is_file()

    model, cfg, state = load_checkpoint(ckpt)
    assert cfg.num_classes == 3 and cfg.num_clothes == 6 and state.epoch == 2
    assert state.label_maps["pids"] == sorted(state.label_maps["pids"])
    from dlcr_data import loaders

    records = loaders.load("demo", tiny_demo)["query"]
    feats = extract_features(model, records, tiny_demo, batch_size=5)
    assert set(feats) == {r.key for r in records}
    assert all(torch.allclose(f.norm(), torch.tensor(1.0), atol=1e-5) for f in feats.values())
    from PIL import Image

    images = [Image.open(tiny_demo / r.path) for r in records[:3]]
    assert torch.allclose(extract_images(model, images), torch.stack([feats[r.key] for r in records[:3]]), atol=1e-5)


def test_resume_continues_and_matches_an_uninterrupted_run(tiny_demo, expanded, tmp_path):
    kw = dict(method="cal", expanded=str(expanded))
    out = tmp_path / "resumed"
    train(config(tiny_demo, out, **kw))
    first = history(out)
    train(config(tiny_demo, out, epochs=3, **kw))  # same config, more epochs: continues from epoch 2
    resumed = history(out)
    assert [h["epoch"] for h in resumed] == [1, 2, 3] and resumed[:2] == first
    assert len(list((out / "checkpoints").iterdir())) == 1  # keep_checkpoints=1

    straight = tmp_path / "straight"
    train(config(tiny_demo, straight, epochs=3, **kw))
    for a, b in zip(history(straight), resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), (a, b)

    with pytest.raises(UserError, match=r"another config.*lr"):
        train(config(tiny_demo, out, epochs=4, lr=1e-3, **kw))
    train(config(tiny_demo, out, epochs=1, lr=1e-3, overwrite=True, **kw))  # --overwrite starts afresh
    assert [h["epoch"] for h in history(out)] == [1]


def test_clothes_losses_see_real_images_only(tiny_demo, expanded, tmp_path, monkeypatch):
    seen = []
    original = CosFaceLoss.forward

    def spy(self, cosines, targets):
        seen.append(targets.clone())
        return original(self, cosines, targets)

    monkeypatch.setattr(CosFaceLoss, "forward", spy)
    train(config(tiny_demo, tmp_path / "run", method="cal", expanded=str(expanded), epochs=1))
    assert seen and all(len(t) == 2 * 4 and (t >= 0).all() for t in seen)  # P*K reals of a 2*P*K batch


# -- pairing and progressive learning ---------------------------------------------------------------------------
def test_progressive_schedule():
    schedule = ProgressiveSchedule()  # DLCR: thresholds (5, 10, 15), fractions (0.25, 0.5, 0.75)
    assert [schedule.pool_size(e, 10) for e in (0, 5, 6, 11, 16)] == [2, 2, 5, 7, 10]
    assert [schedule.pool_size(e, 3) for e in (0, 6, 11, 16)] == [1, 1, 2, 3]  # at least 1
    assert schedule.pool_size(0, 0) == 0
    scaled = TrainConfig(epochs=12, schedule_epochs=60)
    assert scaled.progressive().thresholds == (1, 2, 3)
    assert scaled.milestones() == (4, 8) and scaled.cal_start() == 5
    assert TrainConfig(epochs=12).progressive().thresholds == (5, 10, 15)  # absolute by default


def test_train_config_round_trips_through_json():
    config = TrainConfig(epochs=12, image_size=(64, 32), lr_milestones=(4, 8), distill="x", shape_ot=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict(config.fingerprint()).fingerprint() == config.fingerprint()  # `resolved` ignored


def test_pairing_batches(tiny_demo, expanded, tmp_path):
    data = TrainSet.from_dataset("demo", tiny_demo, SIZE, expanded)
    assert data.num_real == 32 and len(data) == 32 + 24 * 3
    assert sum(1 for p in data.partners if not p) == 8
    schedule = ProgressiveSchedule((0, 1), (0.34, 0.67))  # pools of 1, 2, then all 3 variants
    sampler = PairedBatchSampler(IdentitySampler(data.pids[: data.num_real].tolist(), 2, 4, seed=1), data.partners,
                                 schedule, seed=1)  # fmt: skip
    for epoch, allowed in ((0, 1), (1, 2), (2, 3)):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert batches and len(batches) == len(sampler)
        for batch in batches:
            items, keys = [item for item, _ in batch], [key for _, key in batch]
            reals, partners = items[: len(batch) // 2], items[len(batch) // 2 :]
            assert len(reals) == len(partners) == 8 and all(i < data.num_real for i in reals)
            assert keys[8:] == [key + 1 for key in keys[:8]] and all(key % 2 == 0 for key in keys[:8])
            for real, partner in zip(reals, partners, strict=True):
                assert data.pids[partner] == data.pids[real]
                if data.partners[real]:  # a variant of this very source image, from the allowed pool
                    assert data.sources[partner] == data.keys[real] and data.keys[partner].startswith(data.keys[real])
                    assert 0 <= data.variant[partner] < allowed and data.clothes[partner] == -1
                else:
                    assert partner == real  # no variants: paired with itself
    sampler.set_epoch(2)
    assert list(sampler) == list(sampler)  # deterministic per (seed, epoch)
    assert real_mask(16, paired=True).tolist() == [True] * 8 + [False] * 8 and real_mask(8, paired=False).all()


# -- sampler, labels ------------------------------------------------------------------------------------------------
def test_identity_sampler_is_cals_chunk_sampler():
    rng = random.Random(0)
    pids = [pid for pid in range(10) for _ in range(rng.randint(1, 12))]  # some identities have < K images
    sizes = {pid: pids.count(pid) for pid in set(pids)}
    chunks = sum(max(1, n // 3) for n in sizes.values())  # K = 3: short identities give one chunk (replacement)
    sampler = IdentitySampler(pids, p=4, k=3, seed=7)
    assert len(sampler) == chunks // 4  # every chunk once, the last incomplete batch dropped
    seen = []
    for batch in sampler:
        assert len(batch) == 12
        labels = [pids[item] for item, _ in batch]
        assert all(labels[i] == labels[i - i % 3] for i in range(12))  # K consecutive of one identity
        seen += [item for item, _ in batch]
    long_ids = [pid for pid, n in sizes.items() if n >= 3]
    for pid in long_ids:  # without replacement: no image of an identity with >= K images is drawn twice
        items = [i for i in seen if pids[i] == pid]
        assert len(items) == len(set(items))
    keys = [key for batch in sampler for _, key in batch]
    assert len(keys) == len(set(keys))  # a draw key names one draw of the epoch
    assert list(sampler) == list(IdentitySampler(pids, p=4, k=3, seed=7))
    sampler.set_epoch(1)
    assert list(sampler) != list(IdentitySampler(pids, p=4, k=3, seed=7))


def test_two_processes_see_one_process_batches_split_in_two():
    """2 processes x P chunks and 1 process x 2P chunks: the same draws (items and keys) at every step."""
    rng = random.Random(1)
    pids = [pid for pid in range(12) for _ in range(rng.randint(2, 20))]
    single = list(IdentitySampler(pids, p=8, k=4, seed=3))
    ranks = [list(IdentitySampler(pids, p=4, k=4, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for step, batch in enumerate(single):
        assert sorted(batch) == sorted(ranks[0][step] + ranks[1][step])
    with pytest.raises(UserError, match="no full batch"):
        IdentitySampler(pids, p=100, k=4)


def test_relabelling_is_sorted_and_order_free(tiny_demo):
    from dlcr_data import loaders

    records = loaders.load("demo", tiny_demo)["train"]
    shuffled = random.Random(1).sample(records, len(records))
    maps = LabelMaps.from_records(records)
    assert maps == LabelMaps.from_records(shuffled)
    assert list(maps.pids) == sorted({r.pid for r in records}) and list(maps.clothes) == sorted(maps.clothes)
    matrix = pid2clothes(records, maps)
    assert matrix.sum() == len(maps.clothes)  # every outfit belongs to exactly one identity
    assert torch.equal(matrix, pid2clothes(shuffled, maps))


# -- model and losses -------------------------------------------------------------------------------------------
def test_pretrained_backbone_from_a_local_folder(tmp_path):
    from transformers import ResNetConfig, ResNetModel

    net = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"))
    net.save_pretrained(tmp_path / "resnet")
    model = ReIDModel(ReIDConfig(backbone=str(tmp_path / "resnet"), num_classes=5, image_size=SIZE, pooling="gem"))
    assert torch.equal(model.backbone.embedder.embedder.convolution.weight, net.embedder.embedder.convolution.weight)
    feature, bn_feature, logits = model(torch.randn(4, 3, *SIZE))
    assert feature.shape == bn_feature.shape == (4, 16) and logits.shape == (4, 5)
    assert model.backbone.encoder.stages[-1].layers[0].shortcut.convolution.stride == (1, 1)  # last stride 1
    with pytest.raises(ModelNotFound, match="--backbone"):
        ReIDModel(ReIDConfig(backbone="no-such-org/no-such-model", num_classes=5))


def test_losses():
    features = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 2.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # margin 2: hardest positive - hardest negative per anchor = 1-3, 1-sqrt(10), 2-3, 2-sqrt(10)
    expected = (0.0 + 0.0 + 1.0 + (4.0 - 10**0.5)) / 4
    assert TripletLoss(2.0)(features, pids).item() == pytest.approx(expected, rel=1e-5)

    cosines = torch.tensor([[0.9, 0.1, -0.3, 0.2]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # this identity wears outfits 0 and 1
    uniform = ClothesAdversarialLoss(scale=16, epsilon=1.0)(cosines, torch.tensor([0]), mask)
    logits = 16 * cosines[0]
    neg = torch.logsumexp(logits[2:], 0)
    manual = -0.5 * sum(logits[k] - torch.logaddexp(logits[k], neg) for k in (0, 1))
    assert uniform.item() == pytest.approx(manual.item(), rel=1e-5)
    assert CosFaceLoss(16, 0)(cosines, torch.tensor([0])).item() == pytest.approx(
        torch.nn.functional.cross_entropy(16 * cosines, torch.tensor([0])).item()
    )
