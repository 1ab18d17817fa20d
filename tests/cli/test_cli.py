"""The CLI through Typer's CliRunner (and one real subprocess for the console script / `python -m`)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import typer
from fixtures import WRITERS
from huggingface_hub import HfApi
from typer.testing import CliRunner

from dlcr_data import __version__, loaders
from dlcr_data.build import BuildOptions
from dlcr_data.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dlcr-data {__version__}"


COMMANDS = sorted(typer.main.get_command(app).commands)  # as registered: a new command is covered by itself


def test_the_commands_users_know_stay():
    names = ["datasets", "inspect", "demo", "build", "import-release", "preview", "card", "push-to-hub", "train"]
    assert set(COMMANDS) == {*names, "evaluate", "experiment"}


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)], ids=lambda c: " ".join(c) or "dlcr-data")
def test_help_on_every_command_fits_80_columns(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "…" not in result.stdout  # rich cuts a name or word that does not fit with "…"
    group = typer.main.get_command(app)
    cmd = group.commands[command[0]] if command else group
    names = [opt for param in cmd.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")]
    for name in [*names, "--help"]:
        assert re.search(rf"{re.escape(name)}(?![\w-])", result.stdout), f"{name} is not shown whole"
    assert "<bool>" not in result.stdout  # a plain flag takes no value


def test_datasets_lists_the_six_with_layout_and_stats():
    result = invoke("datasets")
    assert result.exit_code == 0
    for name in loaders.DATASETS:
        assert name in result.stdout
    assert "LTCC_ReID" in result.stdout and "9,576" in result.stdout  # layout and a published figure
    assert "session" in result.stdout  # CCVID's tree


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_inspect_json_counts_and_skipped(tmp_path, name):
    fx = WRITERS[name](tmp_path)
    result = invoke("inspect", name, "--root", fx.root, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert set(report) == {"dataset", "splits", "skipped"}
    assert report["dataset"] == name
    expected = fx.counts(verified=True)
    assert report["splits"] == {
        s: {"images": c.images, "ids": c.ids, "clothes": c.clothes, "cameras": c.cameras} for s, c in expected.items()
    }
    skipped = {item["path"] for item in report["skipped"]}
    assert set(fx.unparseable) <= skipped
    corrupt_reported = {p for p in skipped if any(p == c for c in fx.corrupt)}
    assert corrupt_reported == set(fx.corrupt)
    assert all(item["reason"] for item in report["skipped"])


def test_inspect_table_shows_published_stats(tmp_path):
    fx = WRITERS["ltcc"](tmp_path)
    result = invoke("inspect", "ltcc", "--root", fx.root)
    assert result.exit_code == 0, result.output
    assert "9,576" in result.stdout  # published train size beside the fixture's counts
    assert "skipped" in result.stdout


def test_inspect_accepts_the_parent_folder(tmp_path):
    fx = WRITERS["prcc"](tmp_path, container="query_data")
    result = invoke("inspect", "prcc", "--root", fx.root.parent, "--json", "--no-verify")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"]["train"]["images"] == fx.counts()["train"].images


def test_missing_root_is_one_line_exit_2(tmp_path):
    result = invoke("inspect", "ltcc", "--root", tmp_path / "absent")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "does not exist" in lines[0] and "LTCC_ReID/" in lines[0] and "train/" in lines[0]
    assert "Traceback" not in result.output


def test_missing_expected_folder_is_one_line_exit_2(tmp_path):
    fx = WRITERS["ltcc"](tmp_path)
    for child in (fx.root / "query").iterdir():
        child.unlink()
    (fx.root / "query").rmdir()
    result = invoke("inspect", "ltcc", "--root", fx.root)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing query" in result.stderr


def test_no_root_and_no_default_says_how_to_obtain(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCR_DATA_ROOT", str(tmp_path / "home"))
    result = invoke("inspect", "prcc")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "licence" in message and str(tmp_path / "home" / "prcc") in message and "DLCR_DATA_ROOT" in message


def test_default_root_from_env(tmp_path, monkeypatch):
    fx = WRITERS["vcclothes"](tmp_path / "data")
    monkeypatch.setenv("DLCR_DATA_ROOT", str(tmp_path / "data"))
    result = invoke("inspect", "vcclothes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"]["train"]["images"] == fx.counts(verified=True)["train"].images


def test_unknown_dataset_is_a_user_error():
    result = invoke("inspect", "market1501")
    assert result.exit_code == 2
    assert "unknown dataset" in result.stderr and "ltcc" in result.stderr


def test_demo_command_renders_inspects_and_previews(tmp_path):
    out = tmp_path / "out"
    result = invoke("demo", "--root", tmp_path / "demo", "--ids", 4, "--images-per-camera", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "preview.png").stat().st_size > 0
    assert (tmp_path / "demo" / "demo.json").exists()
    assert "gallery" in result.stdout and "preview" in result.stdout


@pytest.mark.parametrize("option", [["--traits", "vivid"], ["--garment-change", "sleeves"], ["--palette", "neon"]])
def test_demo_option_values_outside_their_choices_are_one_line_errors(tmp_path, option):
    result = invoke("demo", "--root", tmp_path / "demo", *option)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert option[1] in result.stderr and not (tmp_path / "demo").exists()


def test_console_script_and_module_entry_points():
    script = Path(sys.executable).parent / "dlcr-data"  # installed by pip next to the interpreter
    for argv in ([sys.executable, "-m", "dlcr_data", "--version"], [str(script), "--version"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"dlcr-data {__version__}"


# -- one home per option: a command given no options passes exactly the library's defaults ------------------------
EMPTY_ENTRY = {"totals": {"splits": {}}, "outfits": 0, "skipped": []}  # what a build returns, minus its work


def test_build_passes_the_build_options_defaults_and_parses_the_rest(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("dlcr_data.build.build", lambda options, reporter=None: seen.append(options) or EMPTY_ENTRY)
    assert invoke("build", "demo", "--out", tmp_path / "a").exit_code == 0
    args = ["--splits", "train, query", "--mask-classes", "upper,lower", "--resolution", "64X128", "--limit", 3]
    assert invoke("build", "demo", "--out", tmp_path / "b", "--root", tmp_path / "src", *args).exit_code == 0
    assert seen == [
        BuildOptions("demo", tmp_path / "a"),
        BuildOptions(
            "demo",
            tmp_path / "b",
            root=tmp_path / "src",  # as given: `resolved()` records it as text
            splits=("train", "query"),
            mask_classes=("upper", "lower"),
            resolution=(64, 128),
            limit=3,
        ),
    ]


def test_import_release_passes_the_release_options_and_sums_up_the_release(tmp_path, monkeypatch):
    from dlcr_data.build.release import ReleaseOptions

    seen = []
    entry = {
        "release": {"repo": "ihaveamoose/DLCR", "strips": 3, "strips_by_variant_count": {"10": 3}},
        "totals": {"samples": 30, "splits": {"train": {"shards": 1, "samples": 30, "bytes": 10**6}}},
        "skipped": [{"path": "rgb/train/001/D.png", "reason": "name: does not start with the camera letter"}],
    }  # no "outfits": an import describes none
    monkeypatch.setattr("dlcr_data.build.release.import_release", lambda o, reporter=None: seen.append(o) or entry)
    result = invoke("import-release", "prcc", "--release", tmp_path, "--out", tmp_path / "out", "--root", tmp_path)
    assert result.exit_code == 0, result.output
    assert seen == [ReleaseOptions("prcc", tmp_path, tmp_path / "out", root=tmp_path)]
    text = " ".join(result.stdout.split())  # as one line: the console wraps at its width
    assert "outfits described" not in text
    assert "strips: 3; strips by variant count: 10 (3 strips); samples: 30; skipped strips: 1" in text
    assert "rgb/train/001/D.png: name: does not start" in text


def test_every_build_option_has_its_flag():
    """`dlcr-data build` takes every `BuildOptions` field, so a recorded build config is a command line again."""
    flags = {param.name for param in typer.main.get_command(app).commands["build"].params}
    assert {f.name for f in dataclasses.fields(BuildOptions)} == flags


def test_build_label_map_overrides_the_parsers_classes_and_shows_them(tiny_demo, tmp_path):
    label_map = tmp_path / "map.json"
    label_map.write_text('{"arms": "upper"}')
    args = ["build", "demo", "--root", tiny_demo, "--out", tmp_path / "out", "--variants", 1]
    result = invoke(*args, "--label-map", label_map)
    assert result.exit_code == 0, result.output
    assert "parse: oracle labels -> garment classes" in result.output
    assert re.search(r"upper \* +<- upper_clothes, arms\n", result.output)
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["builds"]["demo"]
    assert (entry["label_map"]["arms"], entry["label_map"]["legs"]) == ("upper", "skin")
    assert entry["config"]["label_map"] == '{"arms": "upper"}'  # the file's content, not its path

    label_map.write_text('{"arms": "sleeve"}')
    result = invoke(*args, "--label-map", label_map, "--overwrite")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --label-map {label_map}: label 'arms' has unknown class 'sleeve'; choose from background, hair, "
        "face, skin, upper, lower, dress, shoes, accessories, hat, or null"
    )


def test_train_passes_the_recipe_and_the_users_overrides(tmp_path, monkeypatch):
    from dlcr_data.reid.recipes import resolve

    seen = []
    monkeypatch.setattr("dlcr_data.reid.train.train", lambda config, reporter=None: seen.append(config) or tmp_path)
    assert invoke("train", "demo", "--out", tmp_path / "run").exit_code == 0
    assert invoke("train", "prcc", "--out", tmp_path / "run", "--image-size", "64x32", "--batch-k", "2").exit_code == 0
    run = str(tmp_path / "run")
    assert seen == [resolve("demo", out=run), resolve("prcc", out=run, image_size=(64, 32), batch_k=2)]


def test_experiment_passes_the_experiment_config_defaults(monkeypatch):
    from dlcr_data.experiment import ExperimentConfig

    seen = []
    monkeypatch.setattr(
        "dlcr_data.experiment.run_experiment", lambda c, reporter=None: seen.append(c) or {"rows": [], "epochs": 1}
    )
    assert invoke("experiment").exit_code == 0
    assert seen == [ExperimentConfig()]


def test_evaluate_passes_evaluate_checkpoints_defaults(tmp_path, monkeypatch):
    from dlcr_data.reid import evaluate

    seen = {}
    defaults = inspect.signature(evaluate.evaluate_checkpoint).parameters
    monkeypatch.setattr(evaluate, "evaluate_checkpoint", lambda *args, **kwargs: seen.update(kwargs) or {})
    assert invoke("evaluate", tmp_path, "demo").exit_code == 0
    for name in ("refine", "expanded", "top_ids", "batch_size"):
        assert seen[name] == defaults[name].default, name


def test_push_to_hub_passes_push_to_hubs_defaults(tmp_path, monkeypatch):
    from dlcr_data import hub

    seen = {}
    defaults = inspect.signature(hub.push_to_hub).parameters
    result = hub.PushResult("me/x", [], commit_url="https://huggingface.co/datasets/me/x/commit/0")
    monkeypatch.setattr(hub, "push_to_hub", lambda *args, **kwargs: seen.update(kwargs) or result)
    assert invoke("push-to-hub", tmp_path, "me/x").exit_code == 0
    for name, param in defaults.items():
        if param.default is not inspect.Parameter.empty and name != "api":
            assert seen[name] == param.default, name


# -- the token -------------------------------------------------------------------------------------------------------
def test_token_is_never_printed_or_logged_on_a_real_push(tiny_build, tmp_path, monkeypatch, caplog):
    """The whole upload path (token read, repo created, folder uploaded) against an autospec'd `HfApi`."""
    out = Path(shutil.copytree(tiny_build, tmp_path / "out"))
    secret = "hf_" + "TokenThatMustNeverShow" * 2
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)  # the environment's token is the one read
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    api_class = mock.create_autospec(HfApi)
    api_class.return_value.upload_folder.return_value.commit_url = "https://huggingface.co/datasets/me/x/commit/0"
    monkeypatch.setattr("huggingface_hub.HfApi", api_class)
    caplog.set_level(logging.DEBUG)

    result = invoke("push-to-hub", out, "me/x", "--private", "--revision", "v1")

    assert result.exit_code == 0, result.output
    api_class.return_value.upload_folder.assert_called_once()  # past the token check: the real push ran
    assert "uploaded" in result.stdout and "commit/0" in result.stdout
    for text in (result.stdout, result.stderr, caplog.text):
        assert secret not in text and secret[3:20] not in text
