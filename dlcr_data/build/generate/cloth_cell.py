"""ClonedPerson's homogeneous expansion: find a garment's most homogeneous square cell, then mirror-tile it.

ClonedPerson (Wang et al., CVPR 2022) fills the parts of a clothing texture that the registered warp leaves empty
with copies of one cloth cell. The cell is the square window, on a coarse feature grid, that lies fully inside
the garment mask and has the most uniform features; the paper's features are layer2 activations of a ReID CNN
(a 1/8-resolution grid). Here, a CPU stand-in without weights: per grid cell, the mean of CIE Lab, Sobel gradient
magnitude and local standard deviation of the lightness. Score of a k x k window (k = 2 .. min(grid width / 2,
8)): L2-normalise each feature channel over the window's k^2 positions, take each channel's std, average over
channels, divide by k^2; the lowest score wins, so large homogeneous windows beat small ones. Copies of the cell
are mirrored (odd tile rows flipped vertically, odd columns horizontally), so tiles meet without seams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlcr_data.vocab.colors import rgb_to_lab

MAX_WINDOW = 8  # cells, as ClonedPerson's k <= 8
CELLS_ACROSS = 16  # ClonedPerson's feature grid is 16 cells across a garment crop (128 px wide at 1/8)
# Offsets that make every feature channel positive, like ReLU activations: without them, L2-normalising a channel
# that hovers around zero (a* of a grey shirt, the gradient of a flat one) turns sensor noise into "texture".
_AB_OFFSET = 128.0
_GRAD_OFFSET = 8.0  # Lab L units per pixel
_STD_OFFSET = 4.0  # Lab L units


@dataclass(frozen=True)
class Cell:
    """The chosen cell: pixel rows y0:y0+size and columns x0:x0+size of the image it was searched in."""

    y0: int
    x0: int
    size: int
    score: float


def _box_mean3(a: np.ndarray) -> np.ndarray:
    """3x3 mean of a 2-D array, edges replicated."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def cell_features(lab: np.ndarray) -> np.ndarray:
    """Per-pixel features (H, W, 5) of a Lab crop: L, a+128, b+128, Sobel |grad L| + 8, local std of L + 4."""
    light = lab[..., 0]
    p = np.pad(light, 1, mode="edge")
    h, w = light.shape
    # Sobel: [1 2 1] smoothing across, [-1 0 1] difference along each axis (divided by 8: Lab units per pixel).
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:] - p[:-2, :-2] - 2 * p[1:-1, :-2] - p[2:, :-2]) / 8.0
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:] - p[:-2, :-2] - 2 * p[:-2, 1:-1] - p[:-2, 2:]) / 8.0
    grad = np.hypot(gx[:h, :w], gy[:h, :w])
    std = np.sqrt(np.maximum(_box_mean3(light**2) - _box_mean3(light) ** 2, 0.0))
    return np.stack(
        [light, lab[..., 1] + _AB_OFFSET, lab[..., 2] + _AB_OFFSET, grad + _GRAD_OFFSET, std + _STD_OFFSET], -1
    )


def _pool(a: np.ndarray, stride: int) -> np.ndarray:
    """Mean over non-overlapping stride x stride blocks of the first two axes (sizes must be multiples)."""
    h, w = a.shape[:2]
    return a.reshape(h // stride, stride, w // stride, stride, *a.shape[2:]).mean(axis=(1, 3))


def integral(a: np.ndarray) -> np.ndarray:
    """Summed-area table of the first two axes, with a leading row and column of zeros."""
    return np.pad(a, ((1, 0), (1, 0)) + ((0, 0),) * (a.ndim - 2)).cumsum(0).cumsum(1)


def _window_sums(c: np.ndarray, k: int) -> np.ndarray:
    """Sums over every k x k window (valid positions only) from a summed-area table `c`."""
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def window_scores(features: np.ndarray, inside: np.ndarray, k: int, tables: tuple | None = None) -> np.ndarray:
    """Homogeneity score of every k x k window of a (gh, gw, C) feature grid; +inf where a cell is not `inside`.

    Per channel, the window's k^2 values x are L2-normalised (n = x / |x|); since sum(n^2) = 1, their std is
    sqrt(1/k^2 - mean(n)^2), with mean(n) = sum(x) / (k^2 |x|): two window sums per channel, no loop over windows.
    `tables` are the summed-area tables of (features, features^2, inside), when the caller scores several k.
    """
    gh, gw = inside.shape
    if k > gh or k > gw:
        return np.full((0, 0), np.inf)
    if tables is None:
        tables = (integral(features), integral(features**2), integral(inside.astype(np.float64)))
    n = k * k
    s1, s2, s_in = (_window_sums(t, k) for t in tables)
    mean = s1 / (n * np.sqrt(np.maximum(s2, 1e-12)))
    std = np.sqrt(np.maximum(1.0 / n - mean**2, 0.0))
    score = std.mean(-1) / n
    return np.where(s_in >= n - 0.5, score, np.inf)  # every cell of the window inside


def find_cell(rgb: np.ndarray, region: np.ndarray, stride: int | None = None) -> Cell | None:
    """The most homogeneous square cell of `region` (bool HxW) in the RGB image `rgb` (HxWx3), or None if no
    window of at least 2x2 grid cells fits inside the region.

    The grid is laid over the region's bounding box with `stride` pixels per cell (default: the box width / 16,
    at least 2, as ClonedPerson's 16-cell-wide grid); a grid cell counts as inside when all its pixels are.
    """
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return None
    y0, x0 = int(ys.min()), int(xs.min())
    bh, bw = int(ys.max()) + 1 - y0, int(xs.max()) + 1 - x0
    if stride is None:
        stride = max(2, round(bw / CELLS_ACROSS))
    gh, gw = bh // stride, bw // stride
    kmax = min(gw // 2, MAX_WINDOW)
    if kmax < 2 or gh < 2:
        return None
    box = (slice(y0, y0 + gh * stride), slice(x0, x0 + gw * stride))
    feats = _pool(cell_features(rgb_to_lab(rgb[box])), stride)
    inside = _pool(region[box].astype(np.float64), stride) >= 1.0
    tables = (integral(feats), integral(feats**2), integral(inside.astype(np.float64)))
    best: tuple[float, int, int, int] | None = None
    for k in range(kmax, 1, -1):  # largest first: on a tie the larger window wins
        scores = window_scores(feats, inside, k, tables)
        if scores.size == 0 or not np.isfinite(scores).any():
            continue
        i, j = np.unravel_index(int(np.argmin(scores)), scores.shape)
        if best is None or scores[i, j] < best[0]:
            best = (float(scores[i, j]), k, int(i), int(j))
    if best is None:
        return None
    score, k, i, j = best
    return Cell(y0 + i * stride, x0 + j * stride, k * stride, score)


def mirror_index(pos: np.ndarray, n: int) -> np.ndarray:
    """Index into a cell of length `n` for integer positions relative to the cell's origin (any sign), tiled with
    mirroring: tile t = pos // n runs forward when t is even, backward when odd."""
    pos = np.asarray(pos)
    t, r = np.divmod(pos, n)
    return np.where(t % 2 == 0, r, n - 1 - r)
