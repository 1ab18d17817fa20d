"""Test setup: never touch the network, keep every cache inside the test's temp dirs."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """HF caches and the default dataset root point into a per-session temp folder."""
    home = tmp_path_factory.getbasetemp() / "home"
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "hf" / "datasets"))
    monkeypatch.setenv("DLCR_DATA_ROOT", str(home / "data"))


# -- tiny random-weight models, built once per session and shared by every test file -------------------------
# Tests only read these folders; one that needs a changed model copies it (or edits the loaded model in memory).
@pytest.fixture(scope="session")
def tiny_segformer(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_segformer

    return save_tiny_segformer(tmp_path_factory.mktemp("tiny-segformer"))


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_llava

    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def tiny_llava_next(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_llava_next

    return save_tiny_llava_next(tmp_path_factory.mktemp("tiny-llava-next"))


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_llm

    return save_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_sd_inpaint

    return save_tiny_sd_inpaint(tmp_path_factory.mktemp("tiny-sd-inpaint"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


# -- a tiny finished build, shared by the publishing tests (hub, CLI) ------------------------------------------------
# Read-only: a test that changes it works on a copy (`shutil.copytree(tiny_build, tmp_path / "out")`).
@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """A complete demo build: 6 identities, 3 variants per image, train and query splits, 25 samples a shard."""
    from dlcr_data.build import BuildOptions, build
    from dlcr_data.demo import DemoConfig, render_demo

    root = render_demo(
        tmp_path_factory.mktemp("tiny-demo") / "dlcr_demo", DemoConfig(seed=5, num_ids=6, images_per_camera=2)
    )
    out = tmp_path_factory.mktemp("tiny-build") / "out"
    build(BuildOptions("demo", out, root=str(root), variants=3, splits=("train", "query"), shard_samples=25))
    return out
