"""GPU benchmark of the inpainting denoising loop: full-size SD-1.5 inpainting UNet, random weights, CUDA.

No download: the `UNet2DConditionModel` is built from the SD-1.5 inpainting architecture with random weights
(speed does not depend on the weights). The timed part is the diffusers inpainting denoising loop with
`prompt_embeds` given (no text encoder, no VAE): classifier-free guidance by batch doubling, 9-channel input
(latents + mask + masked-image latents), the checkpoint's default scheduler (PNDM, skip_prk_steps), 50 steps,
guidance 7.5, 256x768 (W x H; latents 32x96).

Configurations, all timed in the same process:

* `ours`: what `dlcr_data.build.generate.diffusion.DiffusionGenerator` does on CUDA: bf16, channels_last UNet,
  batch sizes `--batch-sizes`, optionally `torch.compile(fullgraph=True)`.
* `dlcr`: a DLCR-style loop as peer: the original release's settings (fp16, batch 5, eager, default memory
  format), same loop, same resolution and steps.

Per configuration: images/s (batch / loop seconds, median of `--repeats`), UNet time per step (CUDA events
around each UNet call) and the share of the loop's time spent outside the UNet (scheduler, guidance, concats,
launch gaps), peak memory, and the speed-up over the `dlcr` peer.

    .venv/bin/python bench/gpu_inpaint.py                               # needs a CUDA GPU
    .venv/bin/python bench/gpu_inpaint.py --batch-sizes 8 --compile off --repeats 2
    .venv/bin/python bench/gpu_inpaint.py --smoke                       # tiny UNet on CPU: checks the script only

Without a CUDA device it exits with a message (unless `--smoke`, whose figures mean nothing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import table, write_result

# SD-1.5 inpainting UNet (runwayml/stable-diffusion-inpainting unet/config.json): 9 input channels.
SD15_INPAINT_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "use_linear_projection": False,
}
# The same topology, tiny (diffusers' inpainting tests): only for --smoke on CPU.
TINY_INPAINT_UNET: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 9,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "cross_attention_dim": 32,
}
# The checkpoint's scheduler_config.json (PNDM; DLCR used the checkpoint default).
SD15_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
TEXT_TOKENS = 77
DTYPES = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Config:
    loop: str  # "ours" | "dlcr"
    batch: int
    dtype: str
    compile: bool
    channels_last: bool

    @property
    def label(self) -> str:
        extra = ", compiled" if self.compile else ""
        return f"{self.loop}: batch {self.batch}, {self.dtype}{extra}"


def _torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def build_unet(config: dict, device: str, seed: int = 0):
    """A random-weight UNet built directly on `device` (no CPU copy of ~3.4 GB of fp32 weights)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**config)
    return unet.eval().requires_grad_(False)


class _UnetTimer:
    """Wall time of each UNet call: CUDA events on GPU (no sync inside the loop), perf_counter on CPU."""

    def __init__(self, device: str) -> None:
        import torch

        self.cuda = device.startswith("cuda")
        self.torch = torch
        self.pairs: list[Any] = []

    def start(self) -> Any:
        if self.cuda:
            ev = self.torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def stop(self, begin: Any) -> None:
        if self.cuda:
            end = self.torch.cuda.Event(enable_timing=True)
            end.record()
            self.pairs.append((begin, end))
        else:
            self.pairs.append((begin, time.perf_counter()))

    def seconds(self) -> float:
        if self.cuda:
            return sum(b.elapsed_time(e) for b, e in self.pairs) / 1e3  # call after a synchronize
        return sum(e - b for b, e in self.pairs)


def denoise(unet, cfg: Config, args: argparse.Namespace, device: str, steps: int) -> dict:
    """One diffusers-style inpainting loop over `cfg.batch` images; returns its timings."""
    import torch
    from diffusers import PNDMScheduler

    dtype = _torch_dtype(cfg.dtype)
    w, h = args.resolution
    b, lat = cfg.batch, (h // 8, w // 8)
    g = torch.Generator(device).manual_seed(0)
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    # Inputs the pipeline would have prepared: text embeddings (negative, positive), mask, masked-image latents.
    embeds = torch.randn(2 * b, TEXT_TOKENS, unet.config.cross_attention_dim, generator=g, device=device, dtype=dtype)
    mask = (torch.rand(b, 1, *lat, generator=g, device=device) > 0.5).to(dtype)
    masked = torch.randn(b, 4, *lat, generator=g, device=device, dtype=dtype)
    mask_in, masked_in = torch.cat([mask] * 2), torch.cat([masked] * 2)
    scheduler = PNDMScheduler(**SD15_SCHEDULER)  # fresh: PNDM keeps a history of model outputs
    timer = _UnetTimer(device)
    _sync(device)
    t0 = time.perf_counter()
    scheduler.set_timesteps(steps, device=device)
    latents = torch.randn(b, 4, *lat, generator=g, device=device, dtype=dtype) * scheduler.init_noise_sigma
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            x = torch.cat([x, mask_in, masked_in], dim=1).contiguous(memory_format=memory)
            begin = timer.start()
            noise = unet(x, t, encoder_hidden_states=embeds, return_dict=False)[0]
            timer.stop(begin)
            uncond, cond = noise.chunk(2)
            noise = uncond + args.guidance * (cond - uncond)
            latents = scheduler.step(noise, t, latents, return_dict=False)[0]
    _sync(device)
    seconds = time.perf_counter() - t0
    unet_s = timer.seconds()
    calls = len(timer.pairs)
    return {
        "seconds": seconds,
        "images_per_s": b / seconds,
        "unet_calls": calls,
        "unet_ms_per_call": 1e3 * unet_s / calls,
        "outside_unet_share": max(0.0, 1.0 - unet_s / seconds),
        "finite": bool(torch.isfinite(latents).all()),  # random fp16 weights may overflow; speed is unaffected
    }


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_config(base_unet, cfg: Config, args: argparse.Namespace, device: str) -> dict:
    import torch

    unet = base_unet.to(dtype=_torch_dtype(cfg.dtype))
    unet = unet.to(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    if cfg.compile:
        torch.compiler.reset()
        # Static shapes: one graph per batch size, like a build's full batches (DiffusionGenerator's setting).
        unet = torch.compile(unet, fullgraph=True, dynamic=False)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    denoise(unet, cfg, args, device, args.warmup_steps)  # warm-up: compilation, cuDNN autotuning, allocator
    warmup_s = time.perf_counter() - t
    runs = [denoise(unet, cfg, args, device, args.steps) for _ in range(args.repeats)]
    out = {
        **asdict(cfg),
        "label": cfg.label,
        "warmup_seconds": warmup_s,
        "images_per_s": statistics.median(r["images_per_s"] for r in runs),
        "seconds_per_loop": statistics.median(r["seconds"] for r in runs),
        "unet_ms_per_call": statistics.median(r["unet_ms_per_call"] for r in runs),
        "outside_unet_share": statistics.median(r["outside_unet_share"] for r in runs),
        "unet_calls": runs[0]["unet_calls"],
        "finite": all(r["finite"] for r in runs),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        "runs": runs,
    }
    print(f"{cfg.label}: {out['images_per_s']:.3f} images/s", file=sys.stderr)
    return out


def configs(args: argparse.Namespace) -> list[Config]:
    compile_modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    out = []
    if args.dlcr_peer:
        out.append(Config("dlcr", args.dlcr_batch, args.dlcr_dtype, compile=False, channels_last=False))
    for c in compile_modes:
        for b in args.batch_sizes:
            out.append(Config("ours", b, args.dtype, compile=c, channels_last=True))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def sizes(value: str) -> list[int]:
        return [int(v) for v in value.split(",") if v]

    def resolution(value: str) -> tuple[int, int]:
        w, h = (int(v) for v in value.lower().split("x"))
        if w % 8 or h % 8:
            raise argparse.ArgumentTypeError("width and height must be multiples of 8")
        return w, h

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=sizes, default=None, help="comma-separated (default 1,8,32; smoke 1,2)")
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="dtype of our loop (default bf16)")
    p.add_argument("--compile", choices=("off", "on", "both"), default="both", help="torch.compile the UNet")
    p.add_argument("--steps", type=int, default=50, help="inference steps (PNDM makes steps + 1 UNet calls)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--resolution", type=resolution, default=(256, 768), help="W x H (default 256x768)")
    p.add_argument("--repeats", type=int, default=3, help="timed loops per configuration (median reported)")
    p.add_argument("--warmup-steps", type=int, default=3, help="steps of the untimed warm-up loop")
    p.add_argument("--dlcr-peer", action=argparse.BooleanOptionalAction, default=True, help="time the DLCR peer")
    p.add_argument("--dlcr-batch", type=int, default=5, help="batch of the DLCR-style peer (DLCR: 5)")
    p.add_argument("--dlcr-dtype", choices=DTYPES, default="fp16", help="dtype of the DLCR-style peer (DLCR: fp16)")
    p.add_argument("--smoke", action="store_true", help="tiny UNet, CPU allowed, 2 steps: checks the script only")
    p.add_argument("--json", type=Path, default=None, help="result path (default bench/results/gpu_inpaint.json)")
    args = p.parse_args(argv)
    if args.smoke:  # seconds on a CPU: a check that the script runs, nothing more
        args.steps, args.warmup_steps, args.repeats, args.resolution = 2, 1, 1, (64, 128)
        args.batch_sizes = args.batch_sizes or [1, 2]
        args.dlcr_batch = 2
        args.compile = "off" if args.compile == "both" else args.compile  # inductor on CPU takes minutes
    args.batch_sizes = args.batch_sizes or [1, 8, 32]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        import torch
    except ImportError as err:
        raise SystemExit(f"gpu_inpaint.py needs torch and diffusers: {err}") from None
    if torch.cuda.is_available():
        device = "cuda"
    elif args.smoke:
        device = "cpu"
        args.dtype = args.dlcr_dtype = "fp32"  # CPU half-precision kernels are too slow or missing
    else:
        raise SystemExit(
            "gpu_inpaint.py needs a CUDA GPU, and torch.cuda.is_available() is False here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). Run it on a GPU machine; "
            "`--smoke` checks the script on CPU with a tiny UNet (its figures mean nothing)."
        )
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # `.to(dtype)` on a model warns about keep-in-fp32 modules (none here)
    torch.backends.cuda.matmul.allow_tf32 = True  # only affects fp32 runs
    torch.backends.cudnn.benchmark = True  # fixed shapes per configuration
    unet = build_unet(TINY_INPAINT_UNET if args.smoke else SD15_INPAINT_UNET, device)
    params = sum(p.numel() for p in unet.parameters())
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"UNet: {params / 1e6:.1f}M parameters on {device_name}", file=sys.stderr)

    results = [run_config(unet, cfg, args, device) for cfg in configs(args)]
    peer = next((r for r in results if r["loop"] == "dlcr"), None)
    for r in results:
        r["speedup_vs_dlcr"] = r["images_per_s"] / peer["images_per_s"] if peer else None
    result = {
        "smoke": args.smoke,
        "device": device_name,
        "torch": torch.__version__,
        "config": {
            "unet_parameters": params,
            "resolution": list(args.resolution),
            "steps": args.steps,
            "guidance": args.guidance,
            "scheduler": "PNDMScheduler(skip_prk_steps=True)",
            "repeats": args.repeats,
        },
        "results": results,
    }
    print(report(result))
    if not args.smoke or args.json:  # a smoke run's figures mean nothing: written only when asked
        print(f"\nresult: {write_result('gpu_inpaint', result, args.json)}")
    return result


def report(result: dict) -> str:
    cfg = result["config"]
    rows = [
        [
            r["label"],
            r["images_per_s"],
            1.0 / r["images_per_s"],
            r["unet_ms_per_call"],
            f"{100 * r['outside_unet_share']:.1f}%",
            None if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}",
            None if r["speedup_vs_dlcr"] is None else f"{r['speedup_vs_dlcr']:.2f}x",
        ]
        for r in result["results"]
    ]
    head = (
        f"inpainting denoising loop on {result['device']}: {cfg['unet_parameters'] / 1e6:.1f}M-parameter UNet "
        f"(random weights), {cfg['resolution'][0]}x{cfg['resolution'][1]}, {cfg['steps']} steps, CFG "
        f"{cfg['guidance']}, median of {cfg['repeats']}"
    )
    if result["smoke"]:
        head += "  [SMOKE: tiny UNet, figures mean nothing]"
    headers = ["configuration", "images/s", "s/image", "UNet ms/call", "outside UNet", "peak GiB", "vs dlcr"]
    return f"{head}\n\n{table(headers, rows)}"


if __name__ == "__main__":
    main()
