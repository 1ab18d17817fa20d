"""What the demo contains, decided without drawing anything: config, cameras, identities, splits, file names.

The loader's statistics come from this plan, so they are cheap to compute and always match what is rendered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from dlcr_data.demo.identity import (
    GARMENT_CHANGES,
    MAX_WARDROBE,
    PALETTES,
    TRAIT_SETS,
    Outfit,
    Traits,
    sample_outfits,
    sample_traits,
)

FORMAT_VERSION = 3  # 2: outfit texts always name the pattern; 3: outfit counts and garment changes are options
SPLIT_FOLDERS = {"train": "train", "query": "query", "gallery": "test"}  # loader split -> LTCC folder
QUERY_CAMERAS = 2  # per test (identity, outfit): one query image from each of this many cameras


@dataclass(frozen=True)
class DemoConfig:
    """Everything the rendered files depend on; the same config always gives byte-identical files."""

    seed: int = 0
    num_ids: int = 80  # half train, half test (LTCC style: disjoint identities)
    images_per_camera: int = 4  # per (outfit, camera); each outfit is seen by 2-4 of the 4 cameras
    height: int = 128
    width: int = 64
    min_outfits: int = 2  # each person wears between min_outfits and max_outfits outfits (uniform)
    max_outfits: int = 4
    garment_change: str = "shape"  # how a person's outfits differ: identity.GARMENT_CHANGES
    palette: str = "street"  # how often each clothes colour is worn: identity.PALETTES
    # > 0: everybody picks outfits from this many shared ones (identity.shared_wardrobe); 0: each their own. 16 and
    # "distinct" were chosen on the design demo (seed 1): the originals baseline's CC rank-1 3.4 -> 13.0
    # (docs/demo-experiment.md)
    wardrobe: int = 16
    traits: str = "distinct"  # how far apart people's bodies and hair are: identity.TRAIT_SETS

    def __post_init__(self) -> None:
        if self.seed < 0 or self.num_ids < 2 or self.images_per_camera < 1:
            raise ValueError(f"DemoConfig needs seed >= 0, num_ids >= 2, images_per_camera >= 1: {self}")
        if not 0 <= self.wardrobe <= MAX_WARDROBE:
            raise ValueError(f"DemoConfig needs 0 <= wardrobe <= {MAX_WARDROBE}: {self}")
        if not 1 <= self.min_outfits <= self.max_outfits <= 4:
            raise ValueError(f"DemoConfig needs 1 <= min_outfits <= max_outfits <= 4: {self}")
        if self.garment_change not in GARMENT_CHANGES or self.palette not in PALETTES or self.traits not in TRAIT_SETS:
            raise ValueError(
                f"DemoConfig garment_change/palette/traits must be in {GARMENT_CHANGES}/{PALETTES}/{TRAIT_SETS}: {self}"
            )
        if self.height < 32 or self.width < 16:
            raise ValueError(f"DemoConfig image size must be at least 32x16 (HxW): {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Camera:
    index: int  # 1-based, as in the file names
    brightness: float
    tint: tuple[float, float, float]  # RGB gain of the light
    scale: float  # figure height as a fraction of the image height
    views: tuple[float, float, float]  # P(front), P(back), P(side): the view mix of this camera
    background: str


# Camera 1 is neutral (white light, gain 1): garment colours there match their names.
CAMERAS = (
    Camera(1, 1.0, (1.0, 1.0, 1.0), 0.86, (0.6, 0.2, 0.2), "hall"),
    Camera(2, 0.78, (0.92, 0.98, 1.1), 0.76, (0.2, 0.55, 0.25), "corridor"),
    Camera(3, 1.12, (1.08, 1.0, 0.9), 0.9, (0.2, 0.2, 0.6), "street"),
    Camera(4, 0.9, (0.98, 1.06, 0.94), 0.8, (0.34, 0.33, 0.33), "park"),
)


@dataclass(frozen=True)
class Shot:
    """One image to render."""

    pid: int
    cloth: int  # 1-based outfit index of this identity
    cam: int  # 1-based camera
    index: int  # which of the `images_per_camera` shots of this (outfit, camera)
    frame: int  # running number per identity, as in LTCC names
    folder: str  # "train", "query" or "test"

    @property
    def name(self) -> str:
        return f"{self.pid:03d}_{self.cloth}_c{self.cam}_{self.frame:06d}.png"

    @property
    def clothes_id(self) -> str:
        return f"{self.pid}_{self.cloth}"  # as `ltcc.parse_name` builds it


def parse_shot_name(basename: str) -> tuple[int, str] | None:
    """(pid, clothes id) of a name `Shot.name` wrote (the LTCC rule); None for any other file."""
    parts = basename.removesuffix(".png").split("_")
    if len(parts) != 4 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), f"{int(parts[0])}_{parts[1]}"


@dataclass(frozen=True)
class Person:
    pid: int
    traits: Traits
    outfits: tuple[Outfit, ...]


class Plan:
    """The identities, their outfits and every shot of a config, in a fixed order."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config

    @cached_property
    def people(self) -> dict[int, Person]:
        cfg, people = self.config, {}
        seed = cfg.seed
        for pid in range(1, self.config.num_ids + 1):
            count = int(np.random.default_rng([seed, 6, pid]).integers(cfg.min_outfits, cfg.max_outfits + 1))
            outfits = sample_outfits(seed, pid, count, cfg.garment_change, cfg.palette, cfg.wardrobe)
            people[pid] = Person(pid, sample_traits(seed, pid, cfg.traits), tuple(outfits))
        return people

    @cached_property
    def test_ids(self) -> frozenset[int]:
        pids = np.random.default_rng([self.config.seed, 3]).permutation(list(self.people))
        return frozenset(int(p) for p in pids[: self.config.num_ids // 2])

    @cached_property
    def shots(self) -> list[Shot]:
        cfg, shots = self.config, []
        for pid, person in self.people.items():
            frame = 0
            for cloth in range(1, len(person.outfits) + 1):
                rng = np.random.default_rng([cfg.seed, 4, pid, cloth])
                cams = sorted(int(c) for c in rng.choice(4, size=rng.integers(2, 5), replace=False) + 1)
                queries = set()
                if pid in self.test_ids:
                    for cam in rng.choice(cams, size=QUERY_CAMERAS, replace=False):
                        queries.add((int(cam), int(rng.integers(cfg.images_per_camera))))
                for cam in cams:
                    for k in range(cfg.images_per_camera):
                        frame += int(rng.integers(1, 12))  # gaps, like frames sampled from a video
                        folder = "query" if (cam, k) in queries else "test" if pid in self.test_ids else "train"
                        shots.append(Shot(pid, cloth, cam, k, frame, folder))
        return shots

    def outfit(self, shot: Shot) -> Outfit:
        return self.people[shot.pid].outfits[shot.cloth - 1]

    def outfit_texts(self) -> dict[str, str]:
        return {f"{p.pid}_{i}": o.text() for p in self.people.values() for i, o in enumerate(p.outfits, 1)}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per loader split: images, ids, clothes and cameras."""
        out = {}
        for split, folder in SPLIT_FOLDERS.items():
            shots = [s for s in self.shots if s.folder == folder]
            out[split] = {
                "images": len(shots),
                "ids": len({s.pid for s in shots}),
                "clothes": len({s.clothes_id for s in shots}),
                "cameras": len({s.cam for s in shots}),
            }
        return out
