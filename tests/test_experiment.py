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
