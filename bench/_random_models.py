"""Random-weight models of the build's default architectures, from their public hyper-parameters (no download).

Used by `full_size_models.py`. Tokenizers are offline stand-ins, as tests/tiny_models.py builds them: a byte-level
CLIP BPE vocabulary (no merges) and a character-level Llama tokenizer with `<image>` and a minimal chat template.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# The label set of mattmdjaga/segformer_b2_clothes (ATR clothes parsing), in its order.
CLOTHES_LABELS = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
)  # fmt: skip
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | upper }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
FULL_LAYERS = 32  # Vicuna-7B and Llama-3.1-8B
REDUCED_LAYERS = 4
# fp32 parameters (CPU builds load fp32): fixed part (vision tower, projector, embeddings, heads) and per layer.
LLAVA_FIXED, LLAVA_PER_LAYER = 586e6, 202e6
LLAMA_FIXED, LLAMA_PER_LAYER = 1051e6, 218e6


# -- tokenizers (offline) -----------------------------------------------------------------------------------------
def clip_tokenizer():
    """CLIP BPE tokenizer built offline: byte-level vocabulary, no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + 256 for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def llama_tokenizer():
    """One token per ASCII character, byte fallback for the rest, and `<image>`; a minimal chat template."""
    from transformers import LlamaTokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3}
    vocab.update({f"<0x{b:02X}>": 4 + b for b in range(256)})
    vocab.update({chr(c): len(vocab) + i for i, c in enumerate(range(33, 127))})
    tok = LlamaTokenizer(vocab=vocab, merges=[], add_bos_token=True)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.pad_token = "<unk>"
    tok.chat_template = CHAT_TEMPLATE
    return tok


# -- models -------------------------------------------------------------------------------------------------------
def save_sd15_inpaint(path: Path, dtype) -> dict:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )  # fmt: skip
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
            bos_token_id=512, eos_token_id=513, pad_token_id=513,  # the offline tokenizer's ids
        )
    )  # fmt: skip
    scheduler = PNDMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
    )  # fmt: skip
    pipe = StableDiffusionInpaintPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )  # fmt: skip
    params = {name: _params(m) for name, m in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))}
    pipe.to(dtype).save_pretrained(path)
    return {"parameters": params}


def save_segformer_b2(path: Path, calibration: list[Image.Image]) -> dict:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessorPil

    config = SegformerConfig(
        num_encoder_blocks=4, depths=[3, 4, 6, 3], sr_ratios=[8, 4, 2, 1], hidden_sizes=[64, 128, 320, 512],
        patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], num_attention_heads=[1, 2, 5, 8], mlp_ratios=[4, 4, 4, 4],
        decoder_hidden_size=768, id2label=dict(enumerate(CLOTHES_LABELS)),
        label2id={name: i for i, name in enumerate(CLOTHES_LABELS)},
    )  # fmt: skip
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config).eval()
    processor = SegformerImageProcessorPil(size={"height": 512, "width": 512})
    _calibrate_halves(model, processor, calibration)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return {"parameters": {"segformer": _params(model)}, "classifier": "recalibrated: Background / Upper-clothes"}


def _calibrate_halves(model, processor, images: list[Image.Image]) -> None:
    """Only "Background" and "Upper-clothes" can win, each on about half of the pixels of `images` (as
    tests/tiny_models.py `save_tiny_segformer_halves` does): the classifier's gap rescaled, split at its median."""
    import torch

    low, high = (model.config.label2id[name] for name in ("Background", "Upper-clothes"))
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
        weight[others], bias[others] = 0.0, -1e3


def save_llava15(path: Path, layers: int, dtype) -> dict:
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = llama_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
        patch_size=14, projection_dim=768, hidden_act="quick_gelu",
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
        image_seq_length=576,
    )  # fmt: skip
    images = CLIPImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )  # fmt: skip
    processor = LlavaProcessor(
        images, tok, chat_template=CHAT_TEMPLATE, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )  # fmt: skip
    torch.manual_seed(0)
    with _default_dtype(dtype):  # initialised directly in the saved dtype: half the memory of fp32
        model = LlavaForConditionalGeneration(config)
    params = _params(model)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return {"parameters": {"llava": params}, "text_layers": layers, "text_layers_full": FULL_LAYERS}


def save_llama31_8b(path: Path, layers: int, dtype) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = llama_tokenizer()
    config = LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
    )  # fmt: skip
    torch.manual_seed(0)
    with _default_dtype(dtype):
        model = LlamaForCausalLM(config)
    params = _params(model)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return {"parameters": {"llama": params}, "layers": layers, "layers_full": FULL_LAYERS}


class _default_dtype:
    def __init__(self, dtype) -> None:
        self.dtype = dtype

    def __enter__(self) -> None:
        import torch

        self.old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc) -> None:
        import torch

        torch.set_default_dtype(self.old)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())
