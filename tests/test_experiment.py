"""`run_experiment` on the tiny demo: the originals and DLCR runs, and the refined row."""

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
        epochs=1,
        refine=2,
        seeds=2,
        train={"scratch": "resnet-tiny", "batch_p": 2},
    )
    result = run_experiment(config)
    written = json.loads((out / "experiment.json").read_text())
    assert written["rows"] == result["rows"] and result["seeds"] == [1, 2]
    assert [r["name"] for r in result["rows"]] == ["originals", "dlcr", "dlcr + refine (K=2)"]
    for row, (run, kind) in zip(
        result["rows"], [("originals", "protocols"), ("dlcr", "protocols"), ("dlcr", "refined")], strict=True
    ):
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
