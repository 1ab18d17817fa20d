"""Trainer options of the related methods: DG-Net's teacher labels and fine-grained head, CLIP3DReID's distillation."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from dlcr_data.build import BuildOptions, build
from dlcr_data.cli import app
from dlcr_data.errors import UserError
from dlcr_data.reid import train as train_module
from dlcr_data.reid.checkpoints import load_checkpoint
from dlcr_data.reid.config import TrainConfig
from dlcr_data.reid.evaluate import evaluate_checkpoint
from dlcr_data.reid.features import extract_features
from dlcr_data.reid.losses import (
    global_alignment_loss,
    ot_alignment_loss,
    ramp_weight,
    sinkhorn,
    soft_target_kl,
    teacher_target,
)
from dlcr_data.reid.train import train

SIZE = (64, 32)  # the tiny demo (conftest.py): 32 train images, 3 identities
runner = CliRunner()


@pytest.fixture(scope="module")
def expanded(tiny_demo, tmp_path_factory) -> Path:
    """2 variants for 24 of the 32 train images; the other 8 pair with themselves (real images in the 2nd half)."""
    out = tmp_path_factory.mktemp("build")
    build(BuildOptions("demo", out, root=str(tiny_demo), variants=2, limit=24))
    return out


def config(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(dataset="demo", root=str(root), out=str(out), scratch="resnet-tiny", image_size=SIZE)
    base |= dict(epochs=1, batch_p=2, batch_k=4)
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def teacher(tiny_demo, tmp_path_factory) -> Path:
    """A frozen teacher: one epoch on the real images."""
    return train(config(tiny_demo, tmp_path_factory.mktemp("teacher") / "run"))


def history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())


# -- DG-Net: ramp and soft labels -------------------------------------------------------------------------------
def test_ramp_schedule_scales_with_the_run_length():
    for total in (100, 1000, 100_000):  # DG-Net: 100k iterations, start at 30k, +0.0005 per iteration up to 2
        w = [ramp_weight(step / total) for step in range(total + 1)]
        start, full = int(0.3 * total), int(0.34 * total)
        assert all(v == 0 for v in w[: start + 1])
        assert all(v == pytest.approx(2.0) for v in w[full:])
        mid = (start + full) // 2
        assert w[mid] == pytest.approx(2.0 * (mid - start) / (full - start), rel=1e-6)
        assert all(b >= a for a, b in itertools.pairwise(w))  # non-decreasing
    assert ramp_weight(30_001 / 100_000) == pytest.approx(0.0005, rel=1e-3)  # DG-Net's step size
    assert ramp_weight(0.5, start=0.2, ramp=0.0, cap=3.0) == 3.0
    cfg = TrainConfig(teacher_start=0.5, teacher_ramp=0.25, teacher_cap=1.0)
    assert [cfg.generated_label_weight(p) for p in (0.4, 0.5, 0.625, 0.75, 1.0)] == pytest.approx([0, 0, 0.5, 1, 1])


def test_teacher_target_is_the_renormalised_flip_summed_softmax():
    a, b = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.0, 0.0, 3.0]])
    sa = [math.exp(v) / sum(math.exp(u) for u in (1, 2, 0)) for v in (1, 2, 0)]
    sb = [math.exp(v) / sum(math.exp(u) for u in (0, 0, 3)) for v in (0, 0, 3)]
    by_hand = [(x + y) / 2 for x, y in zip(sa, sb, strict=True)]
    target = teacher_target(a, b)
    assert target[0].tolist() == pytest.approx(by_hand, rel=1e-6) and target.sum().item() == pytest.approx(1.0)
    student = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    targets = torch.cat([target, torch.tensor([[1.0, 0.0, 0.0]])])
    log_q = F.log_softmax(student, dim=1)
    manual = sum(t * (math.log(t) - lq) for row, lrow in zip(targets, log_q, strict=True)
                 for t, lq in zip(row.tolist(), lrow.tolist(), strict=True) if t > 0) / 2  # fmt: skip
    assert soft_target_kl(student, targets).item() == pytest.approx(manual, rel=1e-5)
    assert soft_target_kl(torch.log(targets.clamp_min(1e-30)), targets).item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_run_logs_the_teacher_loss_on_generated_images_only(tiny_demo, expanded, teacher, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    sizes, original = [], train_module.soft_target_kl

    def spy(student, target):
        sizes.append(len(student))
        return original(student, target)

    monkeypatch.setattr(train_module, "soft_target_kl", spy)
    out = tmp_path / "run"
    kw = dict(expanded=str(expanded), gen_label="teacher", teacher=str(teacher), teacher_start=0.0, teacher_ramp=0.5)
    train(config(tiny_demo, out, epochs=2, **kw))
    hist = history(out)
    assert all("loss_teacher" in h and h["loss_teacher"] > 0 for h in hist)
    assert 0 < hist[0]["teacher_weight"] < hist[1]["teacher_weight"] <= 2.0  # ramping up, capped at 2
    assert sizes and all(0 < n <= 8 for n in sizes) and min(sizes) < 8  # some partners are real (no variants)
    assert json.loads((out / "train_config.json").read_text())["gen_label"] == "teacher"

    other = Path(shutil.copytree(teacher, tmp_path / "other-teacher"))
    state = json.loads((other / "trainer_state.json").read_text())
    state["label_maps"]["pids"] = [p + 1000 for p in state["label_maps"]["pids"]]
    (other / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(UserError, match="other identities"):
        train(config(tiny_demo, tmp_path / "bad", **(kw | {"teacher": str(other)})))


# -- DG-Net: fine-grained head ----------------------------------------------------------------------------------
def test_fine_grained_head_round_trip_extract_and_evaluate(tiny_demo, expanded, tmp_path):
    out = tmp_path / "run"
    ckpt = train(config(tiny_demo, out, expanded=str(expanded), fine_grained_head=True, fine_grained_dim=8,
                        teacher_start=0.0, teacher_ramp=0.0))  # fmt: skip
    hist = history(out)
    assert hist[0]["loss_fine"] > 0 and 0 < hist[0]["fine_grained_weight"] <= 0.4  # 0.2 x 2 after the 1st step
    model, cfg, _ = load_checkpoint(ckpt)
    assert cfg.fine_grained_head and cfg.fine_grained_dim == 8
    assert model.embedding_dim == model.feature_dim + 8

    x = torch.randn(3, 3, *SIZE)
    feats = model.extract(x)
    assert feats.shape == (3, model.embedding_dim)
    assert torch.allclose(feats.norm(dim=1), torch.ones(3), atol=1e-5)
    with torch.no_grad():
        a, b = model(x, full=True), model(x.flip(-1), full=True)
        main = F.normalize(a.bn_feature + b.bn_feature, dim=1)
        fine = F.normalize(a.fine_feature + b.fine_feature, dim=1)
    assert torch.allclose(feats, torch.cat([main, fine], dim=1) / math.sqrt(2), atol=1e-5)

    from dlcr_data import loaders

    records = loaders.load("demo", tiny_demo)["query"][:4]
    by_key = extract_features(model, records, tiny_demo, batch_size=3)
    assert all(f.shape == (model.embedding_dim,) for f in by_key.values())
    result = evaluate_checkpoint(ckpt, "demo", tiny_demo, protocols=["general"])
    assert 0 <= result["protocols"]["general"]["mAP"] <= 100


def test_fine_grained_head_resumes_like_an_uninterrupted_run(tiny_demo, expanded, tmp_path):
    """Its dropout draws from torch's global RNG, reseeded per epoch: a resumed run sees the same masks."""
    kw = dict(expanded=str(expanded), fine_grained_head=True, fine_grained_dim=8, epochs=2, keep_checkpoints=2)
    out = tmp_path / "run"
    train(config(tiny_demo, out, **kw))
    straight = history(out)
    shutil.rmtree(out / "checkpoints" / "epoch-0002")  # as if killed during epoch 2
    train(config(tiny_demo, out, **kw))
    for a, b in zip(straight, history(out), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["loss_fine"] == pytest.approx(
            b["loss_fine"], rel=1e-4
        )


# -- CLIP3DReID: Sinkhorn OT, distillation ----------------------------------------------------------------------
def test_sinkhorn_plan_has_uniform_marginals():
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(3, 12, 4, generator=gen) * 2
    plan, iters = sinkhorn(cost, epsilon=0.1, max_iters=1000, tol=1e-3)
    assert iters < 1000
    assert torch.allclose(plan.sum(2), torch.full((3, 12), 1 / 12), atol=1e-3)
    assert torch.allclose(plan.sum(1), torch.full((3, 4), 1 / 4), atol=1e-5)
    cheap = sinkhorn(cost, epsilon=0.1, max_iters=100, tol=0.01)[0]  # CLIP3DReID's settings: error < 0.01
    assert (cheap.sum(2) - 1 / 12).abs().sum(1).max() < 0.011
    small_eps = sinkhorn(cost, epsilon=1e-3, max_iters=100)[0]  # log domain: no overflow for tiny epsilon
    assert torch.isfinite(small_eps).all()


def test_ot_loss_decreases_as_local_features_align():
    gen = torch.Generator().manual_seed(1)
    text = torch.randn(2, 4, 16, generator=gen)
    local = torch.randn(2, 8, 16, generator=gen, requires_grad=True)
    aligned = ot_alignment_loss(text.repeat(1, 2, 1), text).item()
    start = ot_alignment_loss(local, text).item()
    assert aligned == pytest.approx(0.0, abs=1e-3) and start > 0.5
    opt = torch.optim.SGD([local], lr=5.0)
    for _ in range(30):
        opt.zero_grad()
        loss = ot_alignment_loss(local, text)
        loss.backward()
        opt.step()
    assert ot_alignment_loss(local, text).item() < start / 2
    v = torch.randn(5, 16, generator=gen)
    assert global_alignment_loss(3 * v, v).item() == pytest.approx(0.0, abs=1e-6)
    assert global_alignment_loss(v, -v).item() == pytest.approx(4.0, rel=1e-5)  # |a - b|^2 of opposite unit vectors


def test_distill_with_shape_ot_trains_saves_and_resumes(tiny_demo, tiny_clip, tmp_path):
    kw = dict(distill=str(tiny_clip), shape_ot=True)
    out = tmp_path / "run"
    first = train(config(tiny_demo, out, **kw))
    assert (first / "distill.safetensors").is_file()
    assert "distill" in json.loads((first / "trainer_state.json").read_text())["optimizers"]
    assert {"loss_distill", "loss_shape_ot"} <= set(history(out)[0])
    train(config(tiny_demo, out, epochs=2, **kw))  # continues from epoch 1, distillation heads restored
    straight = tmp_path / "straight"
    train(config(tiny_demo, straight, epochs=2, **kw))
    assert [h["epoch"] for h in history(out)] == [1, 2]
    for a, b in zip(history(straight), history(out), strict=True):
        for key in ("loss", "loss_distill", "loss_shape_ot"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (key, a, b)
    model, _, _ = load_checkpoint(out / "checkpoints" / "epoch-0002")  # inference needs neither CLIP nor heads
    assert model.extract(torch.randn(2, 3, *SIZE)).shape == (2, model.embedding_dim)

    with pytest.raises(UserError, match=r"another config.*shape_ot"):
        train(config(tiny_demo, out, epochs=3, distill=str(tiny_clip)))


def test_fingerprint_records_every_learning_option_and_no_runtime_one(tmp_path):
    plain = TrainConfig(out=str(tmp_path)).fingerprint()
    assert (plain["gen_label"], plain["distill"], plain["fine_grained_head"]) == ("hard", None, False)
    assert TrainConfig(out=str(tmp_path), distill="x").fingerprint()["distill"] == "x"
    assert "epochs" not in plain and "out" not in plain and "num_workers" not in plain  # a rerun may change these


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_lists_the_options_and_rejects_bad_combinations(tiny_demo, tmp_path):
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for option in ("--gen-label", "--teacher", "--fine-grained-head", "--distill", "--shape-ot"):
        assert option in result.output
    base = ["train", "demo", "--root", str(tiny_demo), "--out", str(tmp_path / "run"), "--scratch", "resnet-tiny"]
    bad = {
        ("--gen-label", "teacher"): "--teacher",
        ("--gen-label", "soft"): "--gen-label",
        ("--teacher", str(tmp_path)): "--gen-label teacher",
        ("--fine-grained-head",): "--expanded",
        ("--shape-ot",): "--distill",
    }
    for args, needle in bad.items():
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr, (args, result.stderr)


def test_a_training_run_given_as_model_is_pinned_to_its_newest_checkpoint(tiny_demo, teacher, expanded, tmp_path):
    """`--teacher RUN` / `--identity-gate RUN`: the fingerprint records which epoch, so a rerun after the run has
    trained further is refused instead of silently switching models."""
    from dlcr_data.build import BuildOptions

    run = teacher.parent.parent
    cfg = config(tiny_demo, tmp_path / "x", expanded=str(expanded), gen_label="teacher", teacher=str(run))
    assert cfg.teacher == str(teacher) == cfg.fingerprint()["teacher"]
    assert BuildOptions("demo", tmp_path / "b", identity_gate=str(run)).resolved().identity_gate == str(teacher)
