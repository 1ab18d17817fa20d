"""Which CPU kernels give different floats with a different number of torch threads (issue 15's "same seed, other
machine, other result"). Each op runs on the same inputs with 1 thread and with `--threads N`; the table says
whether the outputs and gradients are bitwise equal and their largest difference. Shapes are those of the demo
model's layers (a from-scratch ResNet on 128x64 images, batch 32).

    .venv/bin/python bench/kernel_threads.py --threads 2
"""

from __future__ import annotations

import argparse

import torch
from _common import table, write_result
from torch import nn


def _ops() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    return {
        "conv2d 3x3 (64->64)": (nn.Conv2d(64, 64, 3, padding=1), (32, 64, 32, 16)),
        "conv2d 7x7 stem (3->32)": (nn.Conv2d(3, 32, 7, stride=2, padding=3), (32, 3, 128, 64)),
        "batchnorm2d (train)": (nn.BatchNorm2d(64), (32, 64, 32, 16)),
        "linear (256->40)": (nn.Linear(256, 40), (32, 256)),
        "adaptive avg pool": (nn.AdaptiveAvgPool2d(1), (32, 256, 8, 4)),
        "adaptive max pool": (nn.AdaptiveMaxPool2d(1), (32, 256, 8, 4)),
    }


def run(module: nn.Module, shape: tuple[int, ...], threads: int) -> list[torch.Tensor]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = module.train()
    x = torch.randn(shape, requires_grad=True)
    y = module(x)
    g = torch.randn_like(y, generator=torch.Generator().manual_seed(1))
    y.backward(g)
    grads = [p.grad.clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = None
    return [y.detach().clone(), x.grad.clone(), *grads]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for name, (module, shape) in _ops().items():
        one, many = run(module, shape, 1), run(module, shape, args.threads)
        names = ["output", "input grad", *(f"{n} grad" for n, _ in module.named_parameters())]
        for part, a, b in zip(names, one, many, strict=True):
            diff = (a - b).abs().max().item()
            rows.append({"op": name, "tensor": part, "bitwise_equal": bool(torch.equal(a, b)), "max_abs_diff": diff})
    cells = [[r["op"], r["tensor"], "yes" if r["bitwise_equal"] else "no", f"{r['max_abs_diff']:.1e}"] for r in rows]
    print(table(["op", "tensor", "bitwise equal", "max |diff|"], cells))
    write_result(
        "kernel_threads",
        {"threads": [1, args.threads], "cpu_capability": torch.backends.cpu.get_cpu_capability(), "rows": rows},
    )


if __name__ == "__main__":
    main()
