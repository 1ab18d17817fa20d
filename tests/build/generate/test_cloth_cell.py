"""The cloth cell `clone` tiles into holes: the most homogeneous window and its mirror tiling."""

from __future__ import annotations

import numpy as np

from dlcr_data.build.generate.cloth_cell import find_cell, mirror_index, window_scores


def mirror_tile(cell: np.ndarray, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Mirrored copies of `cell` over `shape`, its top-left at `origin`, indexed as `clone` fills holes."""
    rows = mirror_index(np.arange(shape[0]) - origin[0], cell.shape[0])
    cols = mirror_index(np.arange(shape[1]) - origin[1], cell.shape[1])
    return cell[rows[:, None], cols[None, :]]


def test_mirror_tile_pattern():
    cell = np.arange(12).reshape(3, 4)
    out = mirror_tile(cell, (7, 10))
    np.testing.assert_array_equal(out[0:3, 0:4], cell)
    np.testing.assert_array_equal(out[3:6, 0:4], cell[::-1])  # odd row: vertical flip
    np.testing.assert_array_equal(out[0:3, 4:8], cell[:, ::-1])  # odd column: horizontal flip
    np.testing.assert_array_equal(out[3:6, 4:8], cell[::-1, ::-1])  # odd/odd: both
    np.testing.assert_array_equal(out[6:7, 8:10], cell[0:1, 0:2])  # even/even again
    np.testing.assert_array_equal(out[2], out[3])  # seamless: tiles meet in mirror images
    np.testing.assert_array_equal(mirror_index(np.array([-1, -3, -4, 3]), 3), [0, 2, 2, 2])  # before the origin
    shifted = mirror_tile(cell, (6, 8), origin=(3, 4))
    np.testing.assert_array_equal(shifted[3:6, 4:8], cell)


def test_window_score_prefers_homogeneous_cloth():
    rng = np.random.default_rng(1)
    h, w = 48, 40
    rgb = np.zeros((h, w, 3))
    rgb[:, :20] = np.array([60, 90, 160]) + rng.normal(0, 1.5, (h, 20, 3))  # flat blue cloth, sensor noise
    blotches = rng.uniform(40, 220, (h // 2, 10, 3)).repeat(2, 0).repeat(2, 1)  # 2-px random blotches
    rgb[:, 20:] = blotches
    region = np.ones((h, w), bool)
    region[:, 0] = region[0] = region[-1] = False
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    cell = find_cell(rgb, region, stride=2)
    assert cell is not None and cell.size >= 8
    assert cell.x0 + cell.size <= 20, cell  # in the flat half
    assert region[cell.y0 : cell.y0 + cell.size, cell.x0 : cell.x0 + cell.size].all()
    # Mirror the image: the cell follows the flat half.
    flipped = find_cell(np.ascontiguousarray(rgb[:, ::-1]), np.ascontiguousarray(region[:, ::-1]), stride=2)
    assert flipped is not None and flipped.x0 >= 20
    # The / k^2 favours large windows: a big mildly noisy window beats a small patch eight times calmer (which
    # would win on the spread alone).
    cloth = np.clip(np.rint(np.array([150, 80, 60]) + rng.normal(0, 4, (40, 40, 3))), 0, 255)
    cloth[8:16, 8:16] = np.clip(np.rint(np.array([150, 80, 60]) + rng.normal(0, 0.5, (8, 8, 3))), 0, 255)
    big = find_cell(cloth.astype(np.uint8), np.ones((40, 40), bool), stride=2)
    assert big is not None and big.size == 16, big
    # Scores: a constant window scores 0; a window with any cell outside the region scores inf.
    feats = np.ones((4, 4, 2))
    inside = np.ones((4, 4), bool)
    inside[0, 0] = False
    s = window_scores(feats, inside, 2)
    assert s.shape == (3, 3) and np.isinf(s[0, 0]) and (s.flat[1:] == 0).all()
    # Too small for a 2x2-cell window (grid narrower than 4 cells): no cell, the clone uses the mean colour.
    assert find_cell(rgb[:, :6], region[:, :6], stride=2) is None
