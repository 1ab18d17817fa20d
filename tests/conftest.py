"""Test setup: never touch the network, keep every cache inside the test's temp dirs."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from demo_cases import TINY_DEMO

from dlcr_data.demo import DemoConfig


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """HF caches and the default dataset root point into a per-session temp folder."""
    home = tmp_path_factory.getbasetemp() / "home"
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "hf" / "datasets"))
    monkeypatch.setenv("DLCR_DATA_ROOT", str(home / "data"))


# `load_dataset` caches a local folder under its name and card, not its files: two builds in folders of the same name
# (`out`, `staged`) would read each other's rows. The package keys its own loads by the shards' sha256s
# (`manifest.load_cache_dir`, tested in test_expanded.py); tests that call `load_dataset` directly get one cache per
# test file (for its module fixtures) and one per test.
@pytest.fixture(scope="module", autouse=True)
def _datasets_cache_per_module(tmp_path_factory) -> Iterator[None]:
    import datasets.config

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-datasets-cache"))
        yield


@pytest.fixture(autouse=True)
def _datasets_cache_per_test(tmp_path, monkeypatch) -> None:
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


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


# -- rendered demos, shared by every test file ------------------------------------------------------------------------
# Read-only: a test that changes one works on a copy (`shutil.copytree(tiny_demo, tmp_path / "demo")`).
@pytest.fixture(scope="session")
def demo_root_for(tmp_path_factory) -> Callable[[DemoConfig], Path]:
    """`demo_root_for(config)`: the demo of `config`, rendered once per session, for the few tests whose numbers
    need another config than the tiny demo."""
    from dlcr_data.demo import render_demo

    roots: dict[DemoConfig, Path] = {}

    def root(config: DemoConfig) -> Path:
        if config not in roots:
            roots[config] = render_demo(tmp_path_factory.mktemp("demo") / "dlcr_demo", config)
        return roots[config]

    return root


@pytest.fixture(scope="session")
def tiny_demo(demo_root_for) -> Path:
    """The tiny demo (`TINY_DEMO`)."""
    return demo_root_for(TINY_DEMO)


# -- tiny builds of the tiny demo, shared by the publishing tests (cards, hub, CLI) and the re-ID commands ---------
# Read-only: a test that changes it works on a copy (`shutil.copytree(tiny_build, tmp_path / "out")`).
@pytest.fixture(scope="session")
def tiny_build(tiny_demo, tmp_path_factory) -> Path:
    """A complete build of the tiny demo: 3 variants per image, train and query splits, 25 samples a shard."""
    from dlcr_data.build import BuildOptions, build

    out = tmp_path_factory.mktemp("tiny-build") / "out"
    build(BuildOptions("demo", out, root=str(tiny_demo), variants=3, splits=("train", "query"), shard_samples=25))
    return out


@pytest.fixture(scope="session")
def tiny_expanded(tiny_demo, tmp_path_factory) -> Path:
    """The tiny demo's train and query splits, 3 variants per image, default shards: what `train --expanded`,
    `evaluate --refine` and the experiment read."""
    from dlcr_data.build import BuildOptions, build

    out = tmp_path_factory.mktemp("tiny-expanded") / "out"
    build(BuildOptions("demo", out, root=str(tiny_demo), variants=3, splits=("train", "query")))
    return out
