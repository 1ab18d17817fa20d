"""`run_experiment` on the tiny demo: the originals and DLCR runs, and the refined row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dlcr_data.experiment import ExperimentConfig, run_experiment


def test_experiment_writes_rows_for_both_runs_and_refinement(tiny_demo, tiny_expanded, tmp_path):
    out = Path(shutil.copytree(tiny_expanded, tmp_path / "out"))
    config = ExperimentConfig(
        out=out, root=str(tiny_demo), variants=3, epochs=1, scratch="resnet-tiny", refine=2, batch_p=2
    )
    result = run_experiment(config)
    written = json.loads((out / "experiment.json").read_text())
    assert written["rows"] == result["rows"]
    assert [r["name"] for r in result["rows"]] == ["originals", "dlcr", "dlcr + refine (K=2)"]
    for row in result["rows"]:
        assert set(row) == {"name", "general", "cc"}
        assert set(row["cc"]) == {"rank1", "mAP"}
