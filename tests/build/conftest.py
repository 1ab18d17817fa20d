"""Fixtures of the build-stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from parse_cases import TINY_DEMO

from dlcr_data.loaders.demo import Demo
from dlcr_data.records import Record


@pytest.fixture(scope="module")
def demo(demo_root_for) -> tuple[Path, list[Record]]:
    loaded = Demo(TINY_DEMO).load(demo_root_for(TINY_DEMO))
    return loaded.root, [r for recs in loaded.splits.values() for r in recs]
