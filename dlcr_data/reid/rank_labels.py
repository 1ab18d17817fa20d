"""The labels of a ranking (pids, cameras, clothes) as int codes on the evaluation device, grouped for `metrics`.

Any label type (ints, strings) becomes an int64 code from one mapping shared by query and gallery; the gallery is
grouped by pid so that each query's positives are listed without a query x gallery comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MODES = ("general", "cc", "sc")


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def encode_labels(q: Any, g: Any) -> tuple[np.ndarray, np.ndarray]:
    """Query and gallery labels (ints, strings, floats...) as int64 codes from one shared mapping."""
    q, g = _as_numpy(q).reshape(-1), _as_numpy(g).reshape(-1)
    if q.dtype.kind != g.dtype.kind and {q.dtype.kind, g.dtype.kind} & {"U", "S", "O"}:
        q, g = q.astype(str), g.astype(str)  # "3" and 3 denote the same outfit
    _, codes = np.unique(np.concatenate([q, g]), return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    return codes[: len(q)], codes[len(q) :]


@dataclass(frozen=True)
class RankLabels:
    """Label codes on the evaluation device, plus the gallery grouped by pid (positives without a scan)."""

    q_pids: torch.Tensor
    q_cams: torch.Tensor
    g_cams: torch.Tensor
    q_clothes: torch.Tensor | None
    g_clothes: torch.Tensor | None
    g_by_pid: torch.Tensor  # gallery indices sorted by pid code, ascending index within a pid
    pid_start: torch.Tensor  # first slot of each pid code in g_by_pid
    pid_count: torch.Tensor  # gallery entries of each pid code

    @property
    def num_gallery(self) -> int:
        return len(self.g_cams)

    @classmethod
    def build(cls, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, device: torch.device) -> RankLabels:
        qp, gp = encode_labels(q_pids, g_pids)
        qc, gc = encode_labels(q_camids, g_camids)
        if len(qc) != len(qp) or len(gc) != len(gp):
            raise ValueError(f"{len(qp)}/{len(gp)} query/gallery pids but {len(qc)}/{len(gc)} camids")
        qcl = gcl = None
        if q_clothes is not None and g_clothes is not None:
            qcl, gcl = encode_labels(q_clothes, g_clothes)
            if len(qcl) != len(qp) or len(gcl) != len(gp):
                raise ValueError(f"{len(qp)}/{len(gp)} query/gallery pids but {len(qcl)}/{len(gcl)} clothes ids")
        num_pids = int(max(qp.max(initial=-1), gp.max(initial=-1))) + 1
        count = np.bincount(gp, minlength=num_pids)

        def t(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(a, device=device)

        return cls(
            q_pids=t(qp),
            q_cams=t(qc),
            g_cams=t(gc),
            q_clothes=t(qcl),
            g_clothes=t(gcl),
            g_by_pid=t(np.argsort(gp, kind="stable")),
            pid_start=t(np.cumsum(count) - count),
            pid_count=t(count),
        )


def check_mode(mode: str, labels: RankLabels) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode != "general" and labels.q_clothes is None:
        raise ValueError(f"mode {mode!r} needs clothes ids: pass both q_clothes and g_clothes")
