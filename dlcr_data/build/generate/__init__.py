"""Generators: turn (source image, garment mask, target outfit) requests into composited outfit variants."""

from __future__ import annotations

from collections.abc import Callable

from dlcr_data.build.generate.base import GenerationRequest, Generator
from dlcr_data.build.generate.composite import composite
from dlcr_data.errors import UserError


def _diffusion(**options) -> Generator:
    from dlcr_data.build.generate.diffusion import DiffusionGenerator  # imports torch/diffusers only when asked for

    return DiffusionGenerator(**options)


def _recolor(**options) -> Generator:
    from dlcr_data.build.generate.recolor import RecolorGenerator

    return RecolorGenerator(**options)


def _clone(**options) -> Generator:
    from dlcr_data.build.generate.clone import CloneGenerator

    return CloneGenerator(**options)


def _swap(**options) -> Generator:
    from dlcr_data.build.generate.swap import SwapGenerator

    return SwapGenerator(**options)


GENERATORS: dict[str, Callable[..., Generator]] = {
    "diffusion": _diffusion,
    "recolor": _recolor,
    "clone": _clone,
    "swap": _swap,
}


def _diffusion_class() -> type:
    from dlcr_data.build.generate.diffusion import (
        DiffusionGenerator,  # the module imports torch/diffusers only when instantiated
    )

    return DiffusionGenerator


def _recolor_class() -> type:
    from dlcr_data.build.generate.recolor import RecolorGenerator

    return RecolorGenerator


def _clone_class() -> type:
    from dlcr_data.build.generate.clone import CloneGenerator

    return CloneGenerator


def _swap_class() -> type:
    from dlcr_data.build.generate.swap import SwapGenerator

    return SwapGenerator


# The generator classes, for what they declare (`needs_donor`) without building them (no model loads).
_CLASSES: dict[str, Callable[[], type]] = {
    "diffusion": _diffusion_class,
    "recolor": _recolor_class,
    "clone": _clone_class,
    "swap": _swap_class,
}


def make_generator(name: str, **options) -> Generator:
    """The generator registered as `name`, built with `options` (e.g. `model=`, `steps=` for "diffusion")."""
    factory = GENERATORS.get(name.lower())
    if factory is None:
        raise UserError(f"unknown generator {name!r}; choose one of: {', '.join(GENERATORS)}")
    return factory(**options)


def needs_donor(name: str) -> bool:
    """Whether generator `name` takes an appearance donor per request (`Generator.needs_donor`); loads no model."""
    loader = _CLASSES.get(name.lower())
    if loader is None:
        raise UserError(f"unknown generator {name!r}; choose one of: {', '.join(GENERATORS)}")
    return bool(loader().needs_donor)


__all__ = ["GENERATORS", "GenerationRequest", "Generator", "composite", "make_generator", "needs_donor"]
