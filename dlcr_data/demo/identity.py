"""Who the demo people are: persistent body traits per identity, and the outfits each one wears.

Everything is drawn from `numpy.random.default_rng([seed, tag, pid, ...])`, so an identity or outfit depends only
on the seed and its own indices, never on how many others were sampled before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dlcr_data.vocab.colors import VOCABULARY

# Clothes colours, shared by every identity: two people can wear the same colours, which is what makes
# colour a shortcut that fails when clothes change. Kept far apart so a colour name is recoverable from pixels.
PALETTE: dict[str, tuple[int, int, int]] = {
    name: VOCABULARY[name]
    for name in (
        "black",
        "white",
        "grey",
        "red",
        "blue",
        "green",
        "yellow",
        "orange",
        "pink",
        "purple",
        "brown",
        "beige",
    )
}
BOTTOM_COLOURS = ("black", "grey", "blue", "brown", "beige", "white", "green", "red")
# How often each colour is worn (`DemoConfig.palette`): "uniform" draws every colour alike, so an outfit almost
# names its wearer; "street" is skewed towards dark and neutral clothes, as in street footage (PRCC, LTCC), so many
# people dress alike and clothes alone no longer tell identities apart. Weights are ours, not measured.
STREET_TOPS = {"black": 6, "white": 4, "grey": 4, "blue": 4, "red": 1.5, "green": 1, "yellow": 0.5, "orange": 0.5,
               "pink": 1, "purple": 0.5, "brown": 1.5, "beige": 1.5}  # fmt: skip
STREET_BOTTOMS = {"black": 6, "grey": 3, "blue": 5, "brown": 1.5, "beige": 2, "white": 1, "green": 0.5, "red": 0.5}
PALETTES = ("street", "uniform")
SHOE_COLOURS = ("black", "white", "grey", "brown", "red", "blue")

SKIN_TONES = ((250, 214, 190), (236, 188, 150), (214, 160, 118), (180, 124, 84), (140, 92, 60), (98, 64, 44))
HAIR_COLOURS = ((20, 18, 18), (64, 40, 24), (120, 80, 44), (150, 66, 30), (214, 184, 110), (176, 174, 170))
HAIR_STYLES = ("short", "buzz", "long", "bob", "ponytail", "bun", "curly")
# Dyed and rarer natural shades `DemoConfig.traits="distinct"` adds: auburn, platinum, white, dyed red, dyed blue.
MORE_HAIR_COLOURS = ((120, 36, 20), (232, 222, 190), (236, 236, 232), (176, 30, 40), (40, 56, 150))

# Top garment type -> how much of the arm its sleeves cover.
TOPS: dict[str, str] = {
    "short-sleeve t-shirt": "short",
    "long-sleeve shirt": "long",
    "jacket": "long",
    "hoodie": "long",
    "sleeveless top": "none",
}
BOTTOMS = ("trousers", "jeans", "shorts", "skirt")
PATTERNS = ("plain", "striped", "checked", "dotted")


@dataclass(frozen=True)
class Traits:
    """What stays with a person across outfits and cameras. Lengths are fractions of the body height."""

    height: float  # relative stature, scales the figure within a camera
    head: float  # head height
    legs: float  # hip-to-floor length
    shoulders: float  # half shoulder width
    hips: float  # half hip width
    limb: float  # limb thickness multiplier (slim .. heavy build)
    skin: tuple[int, int, int]
    hair_colour: tuple[int, int, int]
    hair_style: str
    stride: float  # walking gait: leg swing amplitude (radians)
    arm_swing: float
    lean: float  # persistent posture: forward lean (radians)


@dataclass(frozen=True)
class Outfit:
    top: str
    top_colour: str
    pattern: str
    bottom: str
    bottom_colour: str
    shoes: str

    @property
    def sleeves(self) -> str:
        return TOPS[self.top]

    def text(self) -> str:
        """`top | bottom | shoes`, e.g. "red striped long-sleeve shirt | black trousers | white shoes"."""
        # The pattern is always named ("plain" too): a generator renders what the text says, and a text that
        # left "plain" out would let a variant keep its source's pattern.
        return f"{self.top_colour} {self.pattern} {self.top} | {self.bottom_colour} {self.bottom} | {self.shoes} shoes"


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(colour) * rng.uniform(1 - amount, 1 + amount), 0, 255))


TRAIT_SETS = ("subtle", "distinct")  # how far apart people's bodies are (`DemoConfig.traits`)


def sample_traits(seed: int, pid: int, traits: str = "subtle") -> Traits:
    """One person's body. "distinct" widens build and stature and adds hair colours (same draws, other ranges)."""
    if traits not in TRAIT_SETS:
        raise ValueError(f"traits {traits!r} unknown: {TRAIT_SETS}")
    wide = traits == "distinct"
    hair = HAIR_COLOURS + MORE_HAIR_COLOURS if wide else HAIR_COLOURS
    rng = np.random.default_rng([seed, 1, pid])
    return Traits(
        height=float(rng.uniform(0.76 if wide else 0.86, 1.0)),
        head=float(rng.uniform(0.115, 0.15)),
        legs=float(rng.uniform(0.41, 0.55) if wide else rng.uniform(0.43, 0.53)),
        shoulders=float(rng.uniform(0.085, 0.17) if wide else rng.uniform(0.095, 0.145)),
        hips=float(rng.uniform(0.065, 0.135) if wide else rng.uniform(0.075, 0.12)),
        limb=float(rng.uniform(0.7, 1.5) if wide else rng.uniform(0.8, 1.25)),
        skin=_jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 0.05),
        hair_colour=_jitter(rng, hair[rng.integers(len(hair))], 0.08),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        stride=float(rng.uniform(0.18, 0.42)),
        arm_swing=float(rng.uniform(0.15, 0.5)),
        lean=float(rng.uniform(-0.03, 0.08)),
    )


GARMENT_CHANGES = ("shape", "colour", "any")  # how a person's outfits differ (`DemoConfig.garment_change`)


def silhouette(outfit: Outfit) -> tuple[str, str]:
    """What a garment change does to the body's outline: sleeve length and leg cover (jeans are trousers)."""
    return outfit.sleeves, "long" if outfit.bottom in ("trousers", "jeans") else outfit.bottom


def sample_outfits(
    seed: int, pid: int, count: int, change: str = "shape", palette: str = "street", wardrobe: int = 0
) -> list[Outfit]:
    """`count` outfits that all differ in top colour and in the bottom, so each change is a real clothes change.

    `change` says what else differs: "shape", every outfit has its own silhouette (sleeves or leg cover), as when a
    person in PRCC or LTCC swaps a t-shirt and jeans for a jacket and a skirt; "colour", every outfit keeps the
    first one's garment types (only colours and pattern change); "any", types are drawn freely (either may happen).
    `wardrobe` > 0: each outfit is picked from `shared_wardrobe(seed, wardrobe, palette)`, the same few outfits for
    everybody, so strangers dress alike (a person for whom none of them is a change gets an outfit of their own);
    0: every outfit is drawn for its wearer alone.
    """
    if change not in GARMENT_CHANGES or palette not in PALETTES:
        raise ValueError(f"garment change {change!r} or palette {palette!r} unknown: {GARMENT_CHANGES}, {PALETTES}")
    shared = shared_wardrobe(seed, wardrobe, palette) if wardrobe else ()
    outfits: list[Outfit] = []
    for cloth in range(1, count + 1):
        rng = np.random.default_rng([seed, 2, pid, cloth])
        fits = _changes(shared, outfits, change)
        if fits:
            outfit = fits[int(rng.integers(len(fits)))]
        else:  # no wardrobe, or nothing in it is a change: an outfit of this person's own
            while True:  # bounded in practice: 12 top colours, 32 bottoms and 9 silhouettes against <= 3 outfits
                outfit = _draw_outfit(rng, palette)
                if change == "colour" and outfits:
                    outfit = replace(outfit, top=outfits[0].top, bottom=outfits[0].bottom)
                if all(_differs(outfit, o, change) for o in outfits):
                    break
        outfits.append(outfit)
    return outfits


MAX_WARDROBE = 1000  # far below the ~46,000 distinct outfits, so drawing a wardrobe always ends quickly


def shared_wardrobe(seed: int, size: int, palette: str = "street") -> tuple[Outfit, ...]:
    """`size` distinct outfits everybody picks from (`DemoConfig.wardrobe`), as in street footage where many
    people wear the same dark jacket and blue jeans: an outfit then no longer names its wearer."""
    rng = np.random.default_rng([seed, 7])
    outfits: dict[Outfit, None] = {}
    while len(outfits) < min(size, MAX_WARDROBE):
        outfits[_draw_outfit(rng, palette)] = None
    return tuple(outfits)


def _changes(shared: tuple[Outfit, ...], worn: list[Outfit], change: str) -> list[Outfit]:
    """The wardrobe outfits that are a clothes change against every outfit already `worn`."""
    fits = [o for o in shared if all(_differs(o, w, change) for w in worn)]
    if change == "colour" and worn:  # the first outfit's garment types: only colours may change
        fits = [o for o in fits if (o.top, o.bottom) == (worn[0].top, worn[0].bottom)]
    return fits


def _draw_outfit(rng: np.random.Generator, palette: str) -> Outfit:
    street = palette == "street"
    top_colour = _choice(rng, STREET_TOPS if street else dict.fromkeys(PALETTE, 1))
    bottom = str(rng.choice(BOTTOMS))
    bottom_colour = _choice(rng, STREET_BOTTOMS if street else dict.fromkeys(BOTTOM_COLOURS, 1))
    if bottom == "jeans" and rng.random() < 0.6:  # most jeans are blue
        bottom_colour = "blue"
    return Outfit(
        top=str(rng.choice(list(TOPS))),
        top_colour=top_colour,
        pattern=str(rng.choice(PATTERNS, p=[0.4, 0.25, 0.15, 0.2])),
        bottom=bottom,
        bottom_colour=bottom_colour,
        shoes=str(rng.choice(SHOE_COLOURS)),
    )


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    if len(set(weights.values())) == 1:  # uniform: numpy's draw without `p`, as the demo drew before palettes
        return str(rng.choice(list(weights)))
    p = np.array(list(weights.values()), dtype=np.float64)
    return str(rng.choice(list(weights), p=p / p.sum()))


def _differs(new: Outfit, old: Outfit, change: str) -> bool:
    colours = new.top_colour != old.top_colour and (new.bottom, new.bottom_colour) != (old.bottom, old.bottom_colour)
    return colours and (change != "shape" or silhouette(new) != silhouette(old))
