"""What every backend class declares, and the one lookup by name.

Each backend family is a `{cls.name: cls}` map of classes, as `dlcr_data.loaders.DATASETS` is: `parse.PARSERS`,
`describe.DESCRIBERS`, `generate.GENERATORS`, `annotate.body_shape.SHAPE_SCORERS`. A class says what it is
without being built (no model loads, no torch import): its `name`, the model it loads by default and the build
option that names it; `check_dataset` refuses a dataset it cannot work on; `from_options` builds it for a build.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, TypeVar

from dlcr_data.errors import UserError

if TYPE_CHECKING:
    from typing import Self

    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset

T = TypeVar("T")


class Backend:
    """Class attributes every backend declares, and how a build makes one."""

    name: ClassVar[str]  # the registry name, the value of its build option (e.g. `--parser segformer`)
    default_model: ClassVar[str | None] = None  # the model loaded when its option is not given; None: no model
    model_option: ClassVar[str | None] = None  # the build option naming the model, e.g. "--parser-model"

    @classmethod
    def model_refs(cls, opts: BuildOptions) -> dict[str, str]:
        """The model(s) a build with `opts` makes this backend load (option value or default), by option."""
        if cls.model_option is None:
            return {}
        value = getattr(opts, option_field(cls.model_option))
        return {cls.model_option: value or cls.default_model}

    @classmethod
    def check_dataset(cls, spec: SourceDataset) -> None:
        """A one-line UserError when this backend cannot work on dataset `spec` (read from its traits): raised when
        the backends are chosen, before any work. Most backends work on any dataset."""

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> Self:
        """The backend a build with `opts` over dataset `spec` uses (model-free backends take no options)."""
        return cls()


def option_field(option: str) -> str:
    """The `BuildOptions` field of a CLI option: "--parser-model" -> "parser_model"."""
    return option.removeprefix("--").replace("-", "_")


def lookup(family: Mapping[str, type[T]], name: str, what: str) -> type[T]:
    """The class registered as `name` (case-insensitive) in `family`; a one-line UserError listing the choices."""
    cls = family.get(name.lower())
    if cls is None:
        raise UserError(f"unknown {what} {name!r}; choose one of: {', '.join(family)}")
    return cls
