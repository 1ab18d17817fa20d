"""`dlcr-data train` and `evaluate` end to end on the tiny demo (tiny from-scratch backbone)."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

from dlcr_data.build import BuildOptions, build
from dlcr_data.cli import app

runner = CliRunner()


def test_train_then_evaluate_with_refinement(tiny_demo, tiny_expanded, tmp_path):
    run = tmp_path / "run"
    args = ["train", "demo", "--root", str(tiny_demo), "--out", str(run), "--scratch", "resnet-tiny"]
    args += ["--epochs", "1", "--batch-p", "2", "--batch-k", "4", "--image-size", "64x32"]
    args += ["--expanded", str(tiny_expanded)]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    checkpoint = run / "checkpoints" / "epoch-0001"
    assert (checkpoint / "model.safetensors").is_file() and (run / "training_curve.png").stat().st_size > 0

    evaluate = ["evaluate", str(checkpoint), "demo", "--root", str(tiny_demo), "--refine", "2"]
    evaluated = runner.invoke(app, [*evaluate, "--expanded", str(tiny_expanded)])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((checkpoint / "eval" / "metrics.json").read_text())
    assert set(metrics["protocols"]) == set(metrics["refined"]) == {"general", "sc", "cc"}
    for m in (*metrics["protocols"].values(), *metrics["refined"].values()):
        assert 0 <= m["rank1"] <= 100 and 0 <= m["mAP"] <= 100 and m["num_valid"] > 0
    assert (checkpoint / "eval" / "cmc.png").stat().st_size > 0
    assert "refine K=2" in evaluated.stdout


def test_refine_without_variants_is_a_user_error(tiny_demo, tmp_path):
    run = tmp_path / "run"
    args = ["train", "demo", "--root", str(tiny_demo), "--out", str(run), "--scratch", "resnet-tiny"]
    assert runner.invoke(app, [*args, "--epochs", "1", "--image-size", "64x32", "--batch-p", "2"]).exit_code == 0
    result = runner.invoke(app, ["evaluate", str(run / "checkpoints" / "epoch-0001"), "demo", "--root",
                                 str(tiny_demo), "--refine", "2"])  # fmt: skip
    assert result.exit_code == 2 and "--expanded" in result.stderr


def test_evaluate_a_folder_that_is_not_a_checkpoint(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path), "demo"])
    assert result.exit_code == 2 and "not a re-ID checkpoint" in result.stderr


def test_refinement_never_builds_it_names_the_build_command_that_makes_the_query_variants(tiny_demo, tmp_path):
    out = tmp_path / "train_only"
    build(BuildOptions("demo", out, root=str(tiny_demo), variants=2))  # no query split in this build
    run = tmp_path / "run"
    args = ["train", "demo", "--root", str(tiny_demo), "--out", str(run), "--scratch", "resnet-tiny"]
    assert runner.invoke(app, [*args, "--epochs", "1", "--image-size", "64x32", "--batch-p", "2"]).exit_code == 0
    evaluate = ["evaluate", str(run / "checkpoints" / "epoch-0001"), "demo", "--root", str(tiny_demo)]
    evaluate += ["--refine", "2", "--expanded", str(out)]
    shards = sorted(p.name for p in (out / "demo").iterdir())

    refused = runner.invoke(app, evaluate)
    command = (  # every option of the build as recorded, in BuildOptions' field order, query split added
        f"dlcr-data build demo --out {out} --root {tiny_demo} --variants 2 --splits train,query --seed 0 "
        "--parser oracle --mask-classes upper,lower,dress,shoes,accessories --dilation 0 --describer oracle "
        "--generator recolor --steps 50 --guidance 7.5 --resolution 256x768 --negative-prompt '' "
        "--prompt-template 'a person wearing {top}, {bottom} and {shoes}' --sampler random --similar-fraction 0.5 "
        "--image-format png --shard-samples 1000 --batch-size 8 --overwrite"
    )
    assert refused.exit_code == 2
    error = refused.stderr.splitlines()[-1]  # one line (load_expanded's progress bars come before it)
    assert error.endswith(f"{out} lacks 2 demo query variants per image to refine with; build them: {command}")
    assert sorted(p.name for p in (out / "demo").iterdir()) == shards and not (out / "refine").exists()  # no build

    built = runner.invoke(app, shlex.split(command)[1:])
    assert built.exit_code == 0, built.output
    assert runner.invoke(app, evaluate).exit_code == 0
    metrics = json.loads((run / "checkpoints" / "epoch-0001" / "eval" / "metrics.json").read_text())
    assert set(metrics["refined"]) == {"general", "sc", "cc"}
