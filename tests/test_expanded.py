"""`load_expanded`: a build's variants with the index source key -> variants."""

from __future__ import annotations

from dlcr_data import loaders
from dlcr_data.build import BuildOptions, build
from dlcr_data.demo import DemoConfig
from dlcr_data.expanded import load_expanded


def test_two_builds_in_folders_of_the_same_name_load_their_own_rows(demo_root_for, tmp_path):
    """`datasets` caches a local folder by its name and card: without a content-keyed cache the second build below
    (another demo, same folder name `out`, same card) would be served the first one's rows."""
    for seed in (0, 1):
        root = demo_root_for(DemoConfig(seed=seed, num_ids=4, images_per_camera=1))
        out = tmp_path / f"seed{seed}" / "out"
        build(BuildOptions("demo", out, root=str(root), variants=2, splits=("query",)))
        queries = {r.key for r in loaders.load("demo", root)["query"]}
        expanded = load_expanded(out, "demo", split="query")
        assert set(expanded.index) == queries  # the two demos' query keys differ (checked below)
        assert all(len(rows) == 2 for rows in expanded.index.values())
        if seed == 0:
            first = queries
    assert queries != first
