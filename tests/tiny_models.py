"""Tiny random-weight models, saved with `save_pretrained` like downloaded checkpoints (no network, ever).

One place for every backend's stand-in: tests load them through the same `from_pretrained` path as real weights.
Each `save_tiny_*(path)` writes a complete model folder and returns it; weights are seeded, so a folder's bytes
are the same on every run. The builders fork torch's RNG, so building one never changes another test's random
numbers. `conftest.py` builds each once per session (`tiny_segformer`, `tiny_llava`, `tiny_llm`, `tiny_sd` ...).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

# The label set of mattmdjaga/segformer_b2_clothes (ATR clothes parsing), in its order.
CLOTHES_LABELS = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
)  # fmt: skip

# A minimal Llama-style chat template that also renders LLaVA's image placeholder.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | upper }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


# -- parse: SegFormer ----------------------------------------------------------------------------------------
def force_label(model, label: str) -> None:
    """Make a SegFormer's logits constant with `label` winning everywhere (its decode-head classifier only)."""
    classifier = model.decode_head.classifier
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.zero_()
        classifier.bias[model.config.label2id[label]] = 1.0


def _tiny_segformer():
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessorPil

    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=32,
        id2label=dict(enumerate(CLOTHES_LABELS)),
        label2id={name: i for i, name in enumerate(CLOTHES_LABELS)},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SegformerForSemanticSegmentation(config).eval()
    return model, SegformerImageProcessorPil(size={"height": 64, "width": 32})


def save_tiny_segformer(path: Path, winner: str | None = None) -> Path:
    """A tiny SegFormer + PIL processor (64x32 input) with the clothes-parsing labels; `winner` forces one label."""
    model, processor = _tiny_segformer()
    if winner is not None:
        force_label(model, winner)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return Path(path)


def save_tiny_segformer_halves(
    path: Path, images: list[Image.Image], labels: tuple[str, str] = ("Background", "Upper-clothes")
) -> Path:
    """A tiny SegFormer where only `labels` can win, each on about half of the pixels of `images`.

    Random logits are nearly flat (spread ~1e-3), so the gap between the two labels is rescaled to unit spread and
    split at its median over `images`: every image gets a mask with pixels on both sides, never all or nothing.
    """
    model, processor = _tiny_segformer()
    low, high = (model.config.label2id[name] for name in labels)
    classifier = model.decode_head.classifier
    with torch.no_grad():
        logits = model(pixel_values=processor(images=images, return_tensors="pt")["pixel_values"]).logits
        gap = logits[:, high] - logits[:, low]
        scale, median = 1.0 / gap.std(), gap.median()
        weight, bias = classifier.weight, classifier.bias
        weight[high] = (weight[high] - weight[low]) * scale
        bias[high] = (bias[high] - bias[low] - median) * scale
        weight[low], bias[low] = 0.0, 0.0
        others = [i for i in range(len(bias)) if i not in (low, high)]
        weight[others], bias[others] = 0.0, -1e3  # constant and far below: never win
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return Path(path)


# -- describe: LLaVA, LLaVA-NeXT, Llama ----------------------------------------------------------------------
def tiny_tokenizer():
    """An offline Llama tokenizer: one token per ASCII character, byte fallback for the rest, and `<image>`."""
    from transformers import LlamaTokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3}
    vocab.update({f"<0x{b:02X}>": 4 + b for b in range(256)})
    vocab.update({chr(c): len(vocab) + i for i, c in enumerate(range(33, 127))})
    tok = LlamaTokenizer(vocab=vocab, merges=[], add_bos_token=True)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.pad_token = "<unk>"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_llama_config(tok, max_positions: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def _save_tiny_vlm(path: Path, next_: bool) -> Path:
    """LLaVA-1.5 (fixed 16 image tokens) or LLaVA-NeXT (token count depends on the image's aspect ratio)."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        LlavaProcessor,
    )

    tok = tiny_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    common = {
        "vision_config": vision,
        "text_config": tiny_llama_config(tok, 512),
        "image_token_index": tok.convert_tokens_to_ids("<image>"),
        "vision_feature_select_strategy": "default",
    }
    size = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    proc_kw = {"patch_size": 8, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1}
    if next_:
        pins = [[32, 32], [32, 64], [64, 32], [64, 64]]
        config = LlavaNextConfig(**common, image_grid_pinpoints=pins)
        images = LlavaNextImageProcessorPil(**size, image_grid_pinpoints=pins)
        processor = LlavaNextProcessor(images, tok, chat_template=CHAT_TEMPLATE, **proc_kw)
        model_cls = LlavaNextForConditionalGeneration
    else:
        config = LlavaConfig(**common, image_seq_length=16)  # (32 / 8)² patches + CLS - CLS ("default")
        processor = LlavaProcessor(CLIPImageProcessorPil(**size), tok, chat_template=CHAT_TEMPLATE, **proc_kw)
        model_cls = LlavaForConditionalGeneration
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_cls(config)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return Path(path)


def save_tiny_llava(path: Path) -> Path:
    """A tiny LLaVA-1.5 (CLIP vision tower + Llama) with a chat template."""
    return _save_tiny_vlm(path, next_=False)


def save_tiny_llava_next(path: Path) -> Path:
    """A tiny LLaVA-NeXT: any-resolution tiling, so prompts of different aspect ratios differ in length."""
    return _save_tiny_vlm(path, next_=True)


def save_tiny_llm(path: Path) -> Path:
    """A tiny Llama chat model (2048 positions) with the character tokenizer and its chat template."""
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = AutoModelForCausalLM.from_config(tiny_llama_config(tok, 2048))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


# -- generate: Stable Diffusion inpainting -------------------------------------------------------------------
def tiny_clip_tokenizer():
    """CLIP BPE tokenizer built offline: a byte-level vocabulary (ids 0-513 with the special tokens), no merges,
    `model_max_length` 77 (CLIP's context); enough for the pipelines to tokenise any prompt."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + 256 for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def save_tiny_sd_inpaint(path: Path) -> Path:
    """A tiny SD inpainting pipeline (9-channel UNet, 2-block VAE, 5-layer CLIP text encoder), no safety checker."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=9, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        )  # fmt: skip
        torch.manual_seed(0)
        vae = AutoencoderKL(
            block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        )  # fmt: skip
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37,
                layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=5, vocab_size=len(tokenizer),
                max_position_embeddings=77,
            )
        )  # fmt: skip
    pipe = StableDiffusionInpaintPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(path)
    return Path(path)


# -- body shape, distillation: CLIP ---------------------------------------------------------------------------
def save_tiny_clip(path: Path) -> Path:
    """A tiny random CLIP (ViT 32x32 / patch 8, 2-layer text encoder, 16-d projection) + processor, offline."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513, "hidden_size": 32,
            "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
            "vocab_size": len(tokenizer), "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
            "image_size": 32, "patch_size": 8,
        },
        projection_dim=16,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(config).eval()
    size = {"shortest_edge": 32}
    processor = CLIPProcessor(CLIPImageProcessorPil(size=size, crop_size={"height": 32, "width": 32}), tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return Path(path)


# -- provenance: a folder as `hf download --local-dir` leaves it ---------------------------------------------
def as_hf_download(folder: Path, commit: str) -> Path:
    """Write `folder`'s download metadata the way `hf download REPO --local-dir folder` does (huggingface_hub's
    own writer): per file the commit and its etag, an LFS file's sha256 (weights) or any other file's git blob
    sha1. The repo id is not recorded, as with the real command."""
    import hashlib

    from huggingface_hub._local_folder import write_download_metadata

    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and ".cache" not in p.parts):
        data = path.read_bytes()
        lfs = path.suffix in (".safetensors", ".bin")
        etag = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        write_download_metadata(Path(folder), path.relative_to(folder).as_posix(), commit, etag)
    return Path(folder)
