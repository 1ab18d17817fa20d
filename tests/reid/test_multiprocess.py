"""Two training processes (torchrun, CPU gloo) against one.

Per step both see the same images with the same augmentation (`sampler.py`: 2 processes x P chunks = 1 process x 2P
chunks, draw keys seed everything), and DDP averages the two halves' gradients, which is the gradient of the whole
batch's mean loss. What differs is BatchNorm: each process normalises its half with that half's statistics (CAL
trains so too: no SyncBatchNorm). So one process whose model normalises the two halves apart
(`bench/_bn_halves.py`) must follow the two processes' loss curve to float precision; plain one-process training
differs by BatchNorm alone (measured on the demo in docs/performance.md, "Training memory and processes").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOLERANCE = 1e-3  # |loss_id| per epoch, 2 processes vs 1 with BatchNorm per half; measured on the demo: 2e-4
BN_HALVES = Path(__file__).parents[2] / "bench" / "_bn_halves.py"


def start(root: Path, out: Path, processes: int, batch_p: int, bn_halves: bool = False) -> subprocess.Popen:
    args = ["train", "demo", "--root", str(root), "--out", str(out), "--scratch", "resnet-tiny"]
    args += ["--image-size", "64x32", "--epochs", "3", "--batch-p", str(batch_p), "--batch-k", "4", "--cache", "off"]
    args += ["--num-workers", "0"]
    if bn_halves:
        command = [sys.executable, str(BN_HALVES), "4", *args]
    elif processes == 1:
        command = [sys.executable, "-m", "dlcr_data", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        command += ["--standalone", "-m", "dlcr_data", *args]  # --standalone: a free port of its own
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def history(process: subprocess.Popen, out: Path) -> list[dict]:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads((out / "history.json").read_text())


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is tested on Linux")
def test_two_processes_differ_from_one_by_batchnorm_alone(tiny_demo, tmp_path):
    # the two one-process runs share the cores (one thread each), then the two-process run has them
    one = start(tiny_demo, tmp_path / "one", 1, batch_p=4)
    halves = start(tiny_demo, tmp_path / "halves", 1, batch_p=4, bn_halves=True)
    one, halves = history(one, tmp_path / "one"), history(halves, tmp_path / "halves")
    two = history(start(tiny_demo, tmp_path / "two", 2, batch_p=2), tmp_path / "two")
    assert [h["epoch"] for h in one] == [h["epoch"] for h in two] == [h["epoch"] for h in halves] == [1, 2, 3]
    for a, b in zip(two, halves, strict=True):
        assert abs(a["loss_id"] - b["loss_id"]) <= TOLERANCE, (a, b)
        assert a["lr"] == b["lr"]
    assert [h["loss_id"] for h in one] != [h["loss_id"] for h in two]  # BatchNorm's statistics do differ
