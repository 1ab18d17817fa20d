"""Generators: turn (source image, garment mask, target outfit) requests into composited outfit variants."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError
from .base import GenerationRequest, Generator
from .composite import composite


def _diffusion(**options) -> Generator:
    from .diffusion import DiffusionGenerator  # imports torch/diffusers only when asked for

    return DiffusionGenerator(**options)


def _recolor(**options) -> Generator:
    from .recolor import RecolorGenerator

    return RecolorGenerator(**options)


GENERATORS: dict[str, Callable[..., Generator]] = {"diffusion": _diffusion, "recolor": _recolor}


def make_generator(name: str, **options) -> Generator:
    """The generator registered as `name`, built with `options` (e.g. `model=`, `steps=` for "diffusion")."""
    factory = GENERATORS.get(name.lower())
    if factory is None:
        raise UserError(f"unknown generator {name!r}; choose one of: {', '.join(GENERATORS)}")
    return factory(**options)


__all__ = ["GENERATORS", "GenerationRequest", "Generator", "composite", "make_generator"]
