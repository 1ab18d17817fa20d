"""`run_experiment` on the tiny demo: the originals and DLCR runs, the refined row, the curve, parallel runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dlcr_data.experiment import ExperimentConfig, run_experiment


def test_experiment_writes_rows_for_both_runs_and_refinement_over_seeds(tiny_demo, tiny_expanded, tmp_path):
    out = Path(shutil.copytree(tiny_expanded, tmp_path / "out"))
    config = ExperimentConfig(
        out=out,
        root=str(tiny_demo),
        variants=3,
        refine=2,
        seeds=2,
        generators=("recolor",),
        train={"scratch": "resnet-tiny", "batch_p": 2, "epochs": 3},
        curve_every=2,
        jobs=1,
    )
    result = run_experiment(config)
    written = json.loads((out / "experiment.json").read_text())
    assert written["rows"] == result["rows"] and result["seeds"] == [1, 2]
    assert [r["name"] for r in result["rows"]] == ["originals", "dlcr, recolor", "dlcr, recolor + refine (K=2)"]
    runs = [("originals", "protocols"), ("dlcr-recolor", "protocols"), ("dlcr-recolor", "refined")]
    for row, (run, kind) in zip(result["rows"], runs, strict=True):
        assert set(row) == {"name", "general", "cc"}
        for p in ("general", "cc"):
            per_seed = [
                json.loads((out / "experiment" / run / f"seed-{s}" / "eval" / "metrics.json").read_text())[kind][p]
                for s in (1, 2)
            ]
            a, b = (m["rank1"] for m in per_seed)
            assert row[p]["per_seed"]["rank1"] == [a, b]
            assert row[p]["rank1"] == pytest.approx((a + b) / 2) and row[p]["rank1_std"] == pytest.approx(
                abs(a - b) / 2
            )
            assert row[p]["queries"] == per_seed[0]["num_valid"] > 0

    # the curve scores the checkpoints kept every 2nd epoch and the last one; its last point is the final score
    assert (out / "experiment" / "cc_rank1_by_epoch.png").read_bytes().startswith(b"\x89PNG")
    for name, slug in (("originals", "originals"), ("dlcr, recolor", "dlcr-recolor")):
        for seed, curve in zip((1, 2), result["curves"][name], strict=True):
            assert [point["epoch"] for point in curve] == [2, 3]
            final = json.loads((out / "experiment" / slug / f"seed-{seed}" / "eval" / "metrics.json").read_text())
            assert curve[-1]["cc"]["rank1"] == final["protocols"]["cc"]["rank1"]
            kept = sorted(p.name for p in (out / "experiment" / slug / f"seed-{seed}" / "checkpoints").iterdir())
            assert kept == ["epoch-0002", "epoch-0003"]  # epoch 1 was deleted when epoch 2 was saved


def test_parallel_runs_give_the_same_rows_as_one_at_a_time(tiny_demo, tiny_expanded, tmp_path):
    rows = {}
    for jobs in (1, 2):
        out = Path(shutil.copytree(tiny_expanded, tmp_path / f"out-{jobs}"))
        config = ExperimentConfig(
            out=out,
            root=str(tiny_demo),
            variants=3,
            refine=2,
            generators=("recolor",),
            train={"scratch": "resnet-tiny", "batch_p": 2, "epochs": 1},
            curve_every=0,
            jobs=jobs,
        )
        rows[jobs] = run_experiment(config)["rows"]
    assert rows[1] == rows[2]


def test_unknown_generators_are_refused_before_any_work(tmp_path):
    from dlcr_data.errors import UserError

    with pytest.raises(UserError, match="--generators: choose one or more of recolor, clone"):
        run_experiment(ExperimentConfig(out=tmp_path / "out", generators=("inpaint",)))
    assert not (tmp_path / "out").exists()


def test_all_adds_the_related_rows_built_and_trained_from_the_first_seed_models(tmp_path, monkeypatch):
    """`--all`'s wiring, with building and training replaced by recorders (the real paths are the tests above and
    tests/build/test_build_related_methods.py): which builds it asks for, which models it hands on, which rows."""
    from dlcr_data import experiment

    builds, trained = {}, []

    def fake_build(config, out, reporter, **options):
        builds[Path(out)] = options
        return out

    def fake_train_and_score(run, config):
        trained.append(run)
        figures = {"rank1": 0.5, "mAP": 0.25, "num_valid": 7}
        result = {"protocols": {"general": figures, "cc": figures}, "curve": []}
        result["checkpoint"] = f"{run.train.out}/checkpoints/epoch-0001"
        return result | ({"refined": {"general": figures, "cc": figures}} if run.build is not None else {})

    monkeypatch.setattr(experiment, "_build", fake_build)
    monkeypatch.setattr(experiment, "_train_and_score", fake_train_and_score)
    out = tmp_path / "out"
    config = ExperimentConfig(out=out, generators=("recolor",), seeds=2, all=True, jobs=1, curve_every=0)
    result = run_experiment(config)

    originals = f"{out}/experiment/originals/seed-1/checkpoints/epoch-0001"  # first seed's models only
    dlcr = f"{out}/experiment/dlcr-recolor/seed-1/checkpoints/epoch-0001"
    related = out / "experiment" / "builds"
    assert builds == {
        out: {},
        related / "similarity-diversity": {"sampler": "similarity-diversity"},
        related / "identity-gate": {"identity_gate": originals},
        related / "identity-gate-dlcr-model": {"identity_gate": dlcr},
    }
    names = ["originals", "dlcr, recolor", "dlcr, similarity-diversity", "dlcr, identity gate"]
    names += ["dlcr, identity gate, DLCR model", "dlcr, teacher labels + fine-grained head"]
    assert [r.name for r in trained] == [n for n in names for _ in (1, 2)]  # every row, seeds 1 and 2
    teacher = [r for r in trained if r.name == names[-1]]
    assert all(r.train.gen_label == "teacher" and r.train.teacher == originals for r in teacher)
    assert all(r.train.fine_grained_head and r.build == out for r in teacher)  # on the plain recolor build
    for run in trained[4:]:  # every related row is DLCR's stage 2 on its build, refined with its own variants
        assert run.build is not None and run.train.expanded == str(run.build)
    rows = [r["name"] for r in result["rows"]]
    assert rows == [names[0]] + [x for n in names[1:] for x in (n, f"{n} + refine (K=4)")]
