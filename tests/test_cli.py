"""The CLI through Typer's CliRunner (and one real subprocess for the console script / `python -m`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import WRITERS
from typer.testing import CliRunner

from dlcr_data import __version__, loaders
from dlcr_data.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dlcr-data {__version__}"


@pytest.mark.parametrize(
    "command", [[], ["datasets"], ["inspect"], ["demo"], ["build"], ["preview"], ["card"], ["push-to-hub"]]
)
def test_help_on_every_command(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_every_command_is_covered_by_the_help_test():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert names == {
        "datasets",
        "inspect",
        "demo",
        "build",
        "preview",
        "card",
        "push-to-hub",
        "train",
        "evaluate",
        "experiment",
    }


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


def test_console_script_and_module_entry_points():
    script = Path(sys.executable).parent / "dlcr-data"  # installed by pip next to the interpreter
    for argv in ([sys.executable, "-m", "dlcr_data", "--version"], [str(script), "--version"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"dlcr-data {__version__}"
