"""Stable Diffusion inpainting (DLCR, docs/dlcr-method.md §2.5): any diffusers inpainting model, by Hub id or folder."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.build.generate.base import GenerationRequest
from dlcr_data.build.generate.composite import composite, from_model_size, to_model_size
from dlcr_data.errors import UserError
from dlcr_data.pretrained import default_device, default_dtype, load_pretrained
from dlcr_data.progress import quiet_library_warnings

if TYPE_CHECKING:
    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset

# runwayml's repo (used by DLCR) was removed in 2024; this is its community mirror.
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"


class DiffusionGenerator(Backend):
    """Batched inpainting: one pipeline call per batch, one seeded `torch.Generator` per sample."""

    name = "diffusion"
    default_model = DEFAULT_INPAINT_MODEL
    model_option = "--model"
    needs_donor = False  # the outfit comes from the prompt

    def __init__(
        self,
        model: str = DEFAULT_INPAINT_MODEL,
        *,
        revision: str | None = None,
        variant: str | None = None,
        resolution: tuple[int, int] = (256, 768),
        pad: bool = False,
        steps: int = 50,
        guidance: float = 7.5,
        device: str | None = None,
        dtype=None,
        compile: bool = False,
        mask_blur: int = 0,
    ):
        w, h = resolution
        if w <= 0 or h <= 0 or w % 8 or h % 8:
            raise UserError(f"--resolution {w}x{h}: width and height must be positive multiples of 8 (e.g. 256x768)")
        if steps < 1:
            raise UserError(f"--steps {steps}: need at least 1 inference step")
        quiet_library_warnings()  # before diffusers imports transformers' image processors
        import torch
        from diffusers import AutoPipelineForInpainting

        self.model_id = model
        self.resolution = (w, h)
        self.pad, self.steps, self.guidance, self.mask_blur = pad, steps, guidance, mask_blur
        self.device = device or default_device()
        self.dtype = dtype or default_dtype(self.device)

        hub = {"revision": revision} if revision else {}
        with warnings.catch_warnings():
            # diffusers 0.42 still passes `local_dir_use_symlinks` to huggingface_hub 2, which warns about it.
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks", category=UserWarning)
            # Read model_index.json first: a bad id fails fast (before any weights), and it tells us whether
            # this pipeline has a safety checker to switch off.
            config = load_pretrained(AutoPipelineForInpainting.load_config, model, "--model", **hub)
            extra = {}
            if "safety_checker" in config:
                extra = {"safety_checker": None, "requires_safety_checker": False}
            if variant:
                extra["variant"] = variant
            pipe = load_pretrained(
                AutoPipelineForInpainting.from_pretrained, model, "--model", dtype=self.dtype, **hub, **extra
            )
        pipe.set_progress_bar_config(disable=True)
        pipe = pipe.to(self.device)
        if str(self.device).startswith("cuda"):
            pipe.unet.to(memory_format=torch.channels_last)  # faster convolutions on tensor cores
        if compile:
            # Default mode, not CUDA graphs: the last batch of a run is usually smaller and would re-record.
            pipe.unet = torch.compile(pipe.unet, fullgraph=True)
        self.pipe = pipe

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> DiffusionGenerator:
        return cls(
            opts.model or cls.default_model,
            resolution=opts.resolution,
            pad=opts.pad,
            steps=opts.steps,
            guidance=opts.guidance,
            compile=opts.compile,
        )

    def generate(self, batch: list[GenerationRequest]) -> list[Image.Image]:
        if not batch:
            return []
        import torch

        placed = [to_model_size(r.image, r.mask, self.resolution, self.pad) for r in batch]
        w, h = self.resolution
        with torch.inference_mode():
            images = self.pipe(
                prompt=[r.prompt for r in batch],
                negative_prompt=[r.negative_prompt for r in batch],
                image=[p[0] for p in placed],
                mask_image=[p[1] for p in placed],
                height=h,
                width=w,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                # One generator per sample: a sample's output does not depend on its batch neighbours.
                generator=[torch.Generator(self.device).manual_seed(r.seed) for r in batch],
                output_type="pil",
            ).images
        return [
            composite(r.image, from_model_size(img, p[2], r.image.size), r.mask, feather=self.mask_blur)
            for r, img, p in zip(batch, images, placed, strict=True)
        ]
