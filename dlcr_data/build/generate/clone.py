"""Outfit cloning in 2D: warp a donor's garments onto the source person, part by part (model-free, CPU).

After ClonedPerson (Wang et al., "Cloning Outfits from Real-World Images to 3D Characters for Generalizable Person
Re-Identification", CVPR 2022). There, clothes landmarks of a photo are registered to a 3D character's UV map by
one least-squares homography per keypoint group; whatever the warp leaves uncovered is filled by mirror-tiling the
garment's most homogeneous cloth cell ("homogeneous expansion", see `cloth_cell`). Here the target is the source
image itself instead of a UV map, and, without landmark or pose models, the correspondences are the corners of the
minimum-area rectangles of the donor's and the target's garment masks, one homography per outfit part (top =
upper + dress, bottom, shoes). Target pixels whose warped position falls outside the donor's garment are holes and
take the tiled cell; the target's own low-frequency shading is then multiplied back in, so its folds and light
stay. Only pixels inside the request mask change (the garments and, with `feather`, their mixed edge pixels);
outside it the output is bit-identical to the source. Nothing is random: the output is a function of the two
images and their maps (the request seed is not used).

Parts: a part the donor does not show (fewer than `min_pixels` pixels, e.g. hidden shoes) leaves the target's
part as it is; a target part with no pixels is skipped. A dress takes the donor's top (upper or dress), stretched
over the dress's rectangle.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.build.generate.base import GenerationRequest
from dlcr_data.build.generate.cloth_cell import find_cell, mirror_index
from dlcr_data.build.generate.recolor import region_shading
from dlcr_data.vocab.garments import OUTFIT_CLASSES, OUTFIT_PARTS

_LUMA = np.array([0.2126, 0.7152, 0.0722])  # linear-light luminance (Rec. 709 / sRGB primaries)
# sRGB distance below which a garment and its surroundings are too alike to tell a mixed edge pixel's share.
_MIN_CONTRAST = 12.0
_SHADING_FLOOR = 0.02  # linear luminance (about sRGB 40) added before normalising the target's shading
_OFF_SEGMENT = 0.35  # a fringe pixel farther than this share of |g - b| from the garment/surround mix is left alone


# -- shared by the donor-based generators ------------------------------------------------------------------------
def donor_arrays(request: GenerationRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(source RGB, source garment map, mask, donor RGB, donor garment map) as arrays, checked; the donor may
    have another size than the source."""
    src = np.asarray(request.image.convert("RGB"))
    garments = np.asarray(request.garment_map)
    mask = np.asarray(request.mask, bool)
    if garments.shape != src.shape[:2] or mask.shape != src.shape[:2]:
        raise ValueError(f"{request.key}: garment_map/mask shapes must match the image size {request.image.size}")
    if request.donor_image is None or request.donor_garment_map is None:
        raise ValueError(f"{request.key}: this generator needs a donor (donor_image and donor_garment_map)")
    donor = np.asarray(request.donor_image.convert("RGB"))
    donor_map = np.asarray(request.donor_garment_map)
    if donor_map.shape != donor.shape[:2]:
        raise ValueError(f"{request.key}: donor_garment_map shape must match the donor image size")
    return src, garments, mask, donor, donor_map


def feather_into_mask(src: np.ndarray, out: np.ndarray, changed: np.ndarray, fringe: np.ndarray, radius: int) -> None:
    """Carry the colour change of the `changed` pixels into the mixed edge pixels among `fringe` (in place).

    Parsers label a garment's mixed edge pixels (part garment, part background or skin) as not garment, which
    would leave a thin outline of the old colour. A fringe pixel p within `radius` pixels of changed ones is
    modelled as a mix a * g + (1 - a) * b of the mean old colour g of the changed pixels and the mean colour b of
    the surroundings (unchanged pixels farther than `radius` from any changed one) in its (4 * radius + 1)-pixel
    square; a = the projection of p onto the segment b -> g, and 0 when p lies far off that segment (a third
    colour), when g and b are too alike to tell, or when no surroundings are in reach. p gets a times the mean
    change of those changed pixels: a pure background pixel (a = 0) keeps its colour, so there is no halo.
    Callers pass fringe pixels inside the mask only, so outside stays bit-identical.
    """
    if radius <= 0 or not fringe.any() or not changed.any():
        return
    reach = 2 * radius
    # Only the box around the changed pixels, grown by the reach of the sums below, matters.
    cy, cx = np.nonzero(changed)
    top, left = max(0, int(cy.min()) - 2 * reach), max(0, int(cx.min()) - 2 * reach)
    crop = (slice(top, int(cy.max()) + 1 + 2 * reach), slice(left, int(cx.max()) + 1 + 2 * reach))
    src, out, changed, fringe = src[crop], out[crop], changed[crop], fringe[crop]  # views: `out` is written through
    c = changed.astype(np.float64)
    near = _box_sums(_table(c, radius), radius, radius) > 0.5  # within `radius` of a changed pixel
    ys, xs = np.nonzero(fringe & near & ~changed)
    if ys.size == 0:
        return
    src_f = src.astype(np.float64)
    far = (~changed & ~near).astype(np.float64)[..., None]
    c = c[..., None]
    stack = np.concatenate([(out - src_f) * c, src_f * c, c, src_f * far, far], -1)
    sums = _box_sums(_table(stack, reach), reach, reach, ys, xs)
    n_in, n_far = sums[:, 6:7], sums[:, 10:11]  # n_in >= 1: the pixel is near a changed one
    delta, g, b = sums[:, 0:3] / n_in, sums[:, 3:6] / n_in, sums[:, 7:10] / np.maximum(n_far, 1e-12)
    p = src_f[ys, xs]
    gb = g - b
    norm2 = np.maximum((gb**2).sum(1), 1e-12)
    alpha = np.clip(((p - b) * gb).sum(1) / norm2, 0.0, 1.0)
    off = np.linalg.norm(p - b - alpha[:, None] * gb, axis=1)  # distance from the segment b -> g
    fits = (norm2 > _MIN_CONTRAST**2) & (off <= np.maximum(_OFF_SEGMENT * np.sqrt(norm2), _MIN_CONTRAST))
    fits &= n_far[:, 0] > 0.5  # no surroundings in reach (a narrow gap between garments): leave the pixel
    alpha = np.where(fits, alpha, 0.0)
    out[ys, xs] = np.clip(np.rint(p + alpha[:, None] * delta), 0, 255).astype(np.uint8)


def _table(a: np.ndarray, pad: int) -> np.ndarray:
    """Summed-area table of the first two axes of `a` zero padded by `pad` (plus the table's leading zeros)."""
    return np.pad(a, ((pad + 1, pad), (pad + 1, pad)) + ((0, 0),) * (a.ndim - 2)).cumsum(0).cumsum(1)


def _box_sums(
    table: np.ndarray, pad: int, r: int, ys: np.ndarray | None = None, xs: np.ndarray | None = None
) -> np.ndarray:
    """Sums over the (2r+1)-squares (r <= pad) centred on pixels (ys, xs), or on every pixel, from `_table`."""
    if ys is None or xs is None:
        h, w = table.shape[0] - 2 * pad - 1, table.shape[1] - 2 * pad - 1
        lo, hi = pad - r, pad + r + 1
        return (
            table[hi : hi + h, hi : hi + w]
            - table[lo : lo + h, hi : hi + w]
            - table[hi : hi + h, lo : lo + w]
            + (table[lo : lo + h, lo : lo + w])
        )
    y0, y1, x0, x1 = ys + pad - r, ys + pad + r + 1, xs + pad - r, xs + pad + r + 1
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def donor_core(region: np.ndarray, min_pixels: int) -> np.ndarray:
    """`region` without its edge pixels (4-neighbour erosion), where the donor's colours are pure garment, not mixed
    with the background; the whole region if the core would keep fewer than `min_pixels`."""
    core = region.copy()
    core[1:] &= region[:-1]
    core[:-1] &= region[1:]
    core[:, 1:] &= region[:, :-1]
    core[:, :-1] &= region[:, 1:]
    core[[0, -1]] = False
    core[:, [0, -1]] = False
    return core if np.count_nonzero(core) >= min_pixels else region


def fringe_pixels(garments: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mask pixels that belong to no outfit part (mixed edge pixels labelled background, skin ...)."""
    return mask & ~np.isin(garments, OUTFIT_CLASSES)


# -- colour ------------------------------------------------------------------------------------------------------
def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


_LINEAR_LUT = _srgb_to_linear(np.arange(256) / 255.0)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 -> linear light 0..1 (a table lookup for uint8)."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return _LINEAR_LUT[rgb]
    return _srgb_to_linear(rgb.astype(np.float64) / 255.0)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear light (clipped to 0..1) -> sRGB float 0..255."""
    c = np.clip(lin, 0.0, 1.0)
    return 255.0 * np.where(c > 0.0031308, 1.055 * c ** (1 / 2.4) - 0.055, 12.92 * c)


# -- geometry ----------------------------------------------------------------------------------------------------
def _extreme_points(region: np.ndarray) -> np.ndarray:
    """(N, 2) x, y points whose convex hull is the region's pixel squares: the outer corners of each row's first
    and last pixel (every hull vertex of a pixel set is the leftmost or rightmost pixel of its row)."""
    rows = np.flatnonzero(region.any(1))
    first = region[rows].argmax(1)
    last = region.shape[1] - 1 - region[rows, ::-1].argmax(1)
    y = rows.astype(np.float64)
    xs = np.concatenate([first - 0.5, first - 0.5, last + 0.5, last + 0.5])
    ys = np.concatenate([y - 0.5, y + 0.5, y - 0.5, y + 0.5])
    return np.stack([xs, ys], 1)


def min_area_rect(region: np.ndarray, step_deg: float = 0.5, tolerance: float = 0.02) -> np.ndarray:
    """Corners (4, 2) as x, y of the minimum-area rectangle around the pixels of `region` (bool HxW, non-empty).

    A vectorised angle search over [-45, 45) (any rectangle has one side within 45 degrees of horizontal), every
    4 * `step_deg`, then refined to `step_deg` around the best. Among angles within `tolerance` of the smallest
    area, the one closest to axis-aligned wins, so a near-square blob does not come out rotated by 40 degrees.
    Corners are ordered top-left, top-right, bottom-right, bottom-left in the rectangle's own frame (its
    near-horizontal side is "top"/"bottom"), so corresponding corners of two garments never flip or turn them.
    """
    pts = _extreme_points(region)
    i, theta, u, v = _best_angle(pts, np.arange(-45.0, 45.0, 4 * step_deg), tolerance)
    # Refine around the coarse angle (the area is smooth in the angle between hull-edge directions).
    fine = np.rad2deg(theta[i]) + np.arange(-4.0, 4.0 + 1e-9, 1.0) * step_deg
    i, theta, u, v = _best_angle(pts, fine[(fine >= -45.0) & (fine < 45.0)], tolerance)
    u0, u1, v0, v1 = u[i].min(), u[i].max(), v[i].min(), v[i].max()
    c, s = float(np.cos(theta[i])), float(np.sin(theta[i]))
    corners_uv = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])
    return np.stack([corners_uv[:, 0] * c - corners_uv[:, 1] * s, corners_uv[:, 0] * s + corners_uv[:, 1] * c], 1)


def _best_angle(
    pts: np.ndarray, degrees: np.ndarray, tolerance: float
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Index of the best angle (smallest area, then closest to 0 within `tolerance`), the angles in radians and
    the points' coordinates (angles, N) along and across each angle."""
    theta = np.deg2rad(degrees)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    u = pts[:, 0] * cos + pts[:, 1] * sin  # along the rectangle's near-horizontal axis
    v = -pts[:, 0] * sin + pts[:, 1] * cos
    area = (u.max(1) - u.min(1)) * (v.max(1) - v.min(1))
    ok = area <= area.min() * (1.0 + tolerance)
    return int(np.argmin(np.where(ok, np.abs(theta), np.inf))), theta, u, v


def _normaliser(p: np.ndarray) -> np.ndarray:
    """Hartley normalisation: centroid to the origin, mean distance sqrt(2) (conditions the DLT)."""
    centre = p.mean(0)
    scale = np.sqrt(2.0) / max(float(np.linalg.norm(p - centre, axis=1).mean()), 1e-12)
    return np.array([[scale, 0.0, -scale * centre[0]], [0.0, scale, -scale * centre[1]], [0.0, 0.0, 1.0]])


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography mapping points `src` (N >= 4, 2) onto `dst` (N, 2): the DLT with h33 = 1, solved by
    least squares on normalised coordinates (exact for 4 points in general position)."""
    ts, td = _normaliser(src), _normaliser(dst)
    s = src @ ts[:2, :2].T + ts[:2, 2]
    d = dst @ td[:2, :2].T + td[:2, 2]
    n = len(s)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:2], a[0::2, 2] = s, 1.0
    a[1::2, 3:5], a[1::2, 5] = s, 1.0
    a[0::2, 6:8] = -d[:, :1] * s
    a[1::2, 6:8] = -d[:, 1:] * s
    h = np.linalg.lstsq(a, d.reshape(-1), rcond=None)[0]
    hn = np.append(h, 1.0).reshape(3, 3)
    m = np.linalg.inv(td) @ hn @ ts
    return m / m[2, 2]


def apply_homography(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map points (x, y) through the homography `m`."""
    w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    return (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w, (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w


def sample_region(image: np.ndarray, region: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples (N, C) of `image` (H, W, C) at x = `u`, y = `v`, from `region` pixels only, and which
    samples are valid (the nearest pixel lies in `region`); neighbours outside the region get no weight, so
    background never bleeds into the garment."""
    h, w = region.shape
    x0, y0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fx, fy = u - x0, v - y0
    acc = np.zeros((u.size, image.shape[2]))
    wsum = np.zeros(u.size)
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        inb = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        yc, xc = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
        wt = wt * (inb & region[yc, xc])
        acc += wt[:, None] * image[yc, xc]
        wsum += wt
    xn, yn = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
    inb = (yn >= 0) & (yn < h) & (xn >= 0) & (xn < w)
    valid = inb & region[np.clip(yn, 0, h - 1), np.clip(xn, 0, w - 1)] & (wsum > 0)
    return acc / np.maximum(wsum, 1e-12)[:, None], valid


def shading_factor(lin: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The part's low-frequency luminance / its mean, one value per True pixel of `part` (row-major).

    The blur box is about a fifth of the part's height: wider than a print's period, so a striped or dotted
    target gives its folds and light, not its print. Robust to what is not shading: luminances are clipped to
    the part's 10th..90th percentiles first (mixed edge pixels, a hand over the skirt), and a small floor keeps
    the noise of a black garment from turning into factors far from 1; factors stay within 0.25..2.
    """
    ys, xs = np.nonzero(part)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = part[y0:y1, x0:x1]
    light = lin[y0:y1, x0:x1][crop] @ _LUMA
    light = np.clip(light, *np.percentile(light, (10, 90)))
    radius = max(1, round(((y1 - y0) / 5 - 1) / 2))
    shading = region_shading(light, crop, radius) + _SHADING_FLOOR
    return np.clip(shading / float(shading.mean()), 0.25, 2.0)


# -- the generator -----------------------------------------------------------------------------------------------
class CloneGenerator(Backend):
    """Clones the donor's outfit onto the source person: per part, a rectangle-to-rectangle homography warp of the
    donor's garment, holes filled with its mirror-tiled homogeneous cell, the source's shading kept.

    Options: `keep_shading` multiplies the source part's normalised low-frequency luminance into the clone;
    `feather` (pixels, 0 = off) recolours non-garment mask pixels next to changed ones part way (mixed edge
    pixels); `cell_stride` is the cell-search grid in pixels (None: the donor garment's width / 16, at least 2);
    `min_pixels` is the smallest donor part that is cloned.
    """

    name = "clone"
    model_id: str | None = None
    needs_donor = True

    def __init__(
        self, *, keep_shading: bool = True, feather: int = 1, cell_stride: int | None = None, min_pixels: int = 8
    ) -> None:
        self.keep_shading = keep_shading
        self.feather = feather
        self.cell_stride = cell_stride
        self.min_pixels = min_pixels

    def clone_part(
        self, src_lin: np.ndarray, part: np.ndarray, write: np.ndarray, donor: np.ndarray, donor_lin: np.ndarray,
        donor_part: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """New linear-RGB values (N, 3) for the `write` pixels (row-major) of the target `part`."""
        m = homography(min_area_rect(part), min_area_rect(donor_part))  # target -> donor: an inverse warp
        ys, xs = np.nonzero(write)
        u, v = apply_homography(m, xs.astype(np.float64), ys.astype(np.float64))
        core = donor_core(donor_part, self.min_pixels)  # sample pure garment colours, not mixed edge pixels
        values, valid = sample_region(donor_lin, core, u, v)
        holes = ~valid
        if holes.any():
            cell = find_cell(donor, core, self.cell_stride)
            if cell is None:  # too small for a 2x2-cell window: the garment's mean colour
                values[holes] = donor_lin[core].mean(0)
            else:
                # Tiles continue the cell in donor coordinates, so they share the warp's scale and orientation.
                tile = donor_lin[cell.y0 : cell.y0 + cell.size, cell.x0 : cell.x0 + cell.size]
                rows = mirror_index(np.rint(v[holes]).astype(np.int64) - cell.y0, cell.size)
                cols = mirror_index(np.rint(u[holes]).astype(np.int64) - cell.x0, cell.size)
                values[holes] = tile[rows, cols]
        if self.keep_shading:
            factor = np.zeros(part.shape)
            factor[part] = shading_factor(src_lin, part)
            values = values * factor[write][:, None]
        return values

    def clone(self, request: GenerationRequest) -> Image.Image:
        src, garments, mask, donor, donor_map = donor_arrays(request)
        src_lin, donor_lin = srgb_to_linear(src), srgb_to_linear(donor)
        out = src.copy()
        changed = np.zeros(mask.shape, bool)
        for _, classes in OUTFIT_PARTS:
            part = np.isin(garments, classes)  # geometry and shading from the whole garment ...
            write = part & mask  # ... but only masked pixels change
            if not write.any():
                continue
            donor_part = np.isin(donor_map, classes)
            if np.count_nonzero(donor_part) < max(1, self.min_pixels):
                continue  # the donor does not show this part: keep the source's
            values = self.clone_part(src_lin, part, write, donor, donor_lin, donor_part)
            out[write] = np.rint(linear_to_srgb(values)).astype(np.uint8)
            changed |= write
        feather_into_mask(src, out, changed, fringe_pixels(garments, mask), self.feather)
        return Image.fromarray(out)

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]:
        return [self.clone(r) for r in batch]
