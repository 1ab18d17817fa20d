"""Which backend of each family a build uses, and the models they load: chosen and checked before any work.

An unknown backend name, a backend the dataset cannot serve (`Backend.check_dataset`) or a model reference that does
not resolve fails here, before the out folder is touched.
"""

from __future__ import annotations

from dlcr_data import loaders
from dlcr_data.build.annotate.body_shape import SHAPE_SCORERS, scorer_name
from dlcr_data.build.backends import lookup
from dlcr_data.build.context import Backends
from dlcr_data.build.describe import DESCRIBERS
from dlcr_data.build.generate import GENERATORS
from dlcr_data.build.options import GATE_OPTION, BuildOptions
from dlcr_data.build.parse import PARSERS


def choose_backends(opts: BuildOptions) -> Backends:
    """The backend classes resolved `opts` name (nothing is built, no model loads), each checked against the
    dataset's traits (`Backend.check_dataset`)."""
    backends = Backends(
        parser=lookup(PARSERS, opts.parser, "parser"),
        describer=lookup(DESCRIBERS, opts.describer, "describer"),
        generator=lookup(GENERATORS, opts.generator, "generator"),
        shape_scorer=None if opts.body_shape is None else SHAPE_SCORERS[scorer_name(opts.body_shape)],
    )
    spec = loaders.get(opts.dataset)
    for cls in (backends.parser, backends.describer, backends.generator, backends.shape_scorer):
        if cls is not None:
            cls.check_dataset(spec)
    return backends


def model_refs(opts: BuildOptions, backends: Backends) -> dict[str, str]:
    """The model each model-based stage will load (option value or the backend's default), by CLI option."""
    refs: dict[str, str] = {}
    for cls in (backends.parser, backends.describer, backends.generator, backends.shape_scorer):
        if cls is not None:
            refs.update(cls.model_refs(opts))
    if opts.identity_gate is not None:
        refs[GATE_OPTION] = opts.identity_gate
    return refs


def check_models(opts: BuildOptions, backends: Backends) -> dict[str, dict]:
    """Every model reference resolves before any work starts; returns what the manifest records of each, by
    model option: Hub id and commit, or a local folder's weights hash (`pretrained.model_record`)."""
    from dlcr_data.pretrained import model_record

    return {option.removeprefix("--"): model_record(ref, option) for option, ref in model_refs(opts, backends).items()}
