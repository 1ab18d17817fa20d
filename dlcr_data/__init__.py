"""dlcr-data: clothes-changing person re-ID data expansion (DLCR) as Hugging Face datasets."""

from __future__ import annotations

__version__ = "0.1.0"

# Public entry points, imported lazily so `dlcr-data --help` does not pay for torch/datasets imports.
_LAZY = {
    "load_source": "dlcr_data.loaders.hf_builder",
    "load_expanded": "dlcr_data.expanded",
    "evaluate_rank": "dlcr_data.reid.metrics",
    "evaluate_features": "dlcr_data.reid.metrics",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlcr_data' has no attribute {name!r}")
