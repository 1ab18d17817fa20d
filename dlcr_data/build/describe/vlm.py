"""The `vlm` describer: DLCR's captions and summary with any transformers models.

DLCR's recipe (docs/dlcr-method.md §2.1-2.2): a VLM captions each image, an LLM summarises *all* captions of an
outfit into the released "top | bottom | shoes" line (§2.8). Unlike the original's silent 200-word cut, captions
that do not fit the LLM's context are dropped evenly and counted (`captions_dropped`); malformed answers are
retried once, then replaced by the `color` describer's answer, recorded in `fallback`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dlcr_data.build.backends import Backend
from dlcr_data.build.describe.base import (
    LLM_OPTION,
    MAX_PART_WORDS,
    VLM_OPTION,
    OutfitImages,
    OutfitText,
    parse_outfit_text,
)
from dlcr_data.build.describe.color import ColorDescriber
from dlcr_data.errors import UserError
from dlcr_data.pretrained import default_device, default_dtype, load_pretrained
from dlcr_data.progress import quiet_library_warnings

if TYPE_CHECKING:
    from dlcr_data.build.options import BuildOptions
    from dlcr_data.loaders import SourceDataset

log = logging.getLogger(__name__)

DEFAULT_VLM = "llava-hf/llava-1.5-7b-hf"
DEFAULT_LLM = "meta-llama/Llama-3.1-8B-Instruct"

CAPTION_QUESTION = (
    "Describe the clothes this person is wearing: the top, the bottom (trousers, jeans, shorts, skirt ...) "
    "and the shoes, with their colours."
)
SUMMARY_PROMPT = (
    "Below are {n} descriptions of photos of the same person, always wearing the same outfit.\n\n{captions}\n\n"
    "Summarise the outfit as three short phrases, each with its colour: the upper-body garment, the lower-body "
    "garment and the shoes, in the form\ntop | bottom | shoes\nfor example: grey hooded sweatshirt | blue jeans | "
    "white sneakers\nAnswer with that one line only."
)
STRICT_SUFFIX = (
    "\n\nImportant: reply with exactly one line of three phrases separated by ' | ', at most "
    f"{MAX_PART_WORDS} words each, and nothing else: no labels, no numbering, no explanation."
)


class VLMDescriber(Backend):
    """DLCR's captions + summary: a VLM captions every image, an LLM turns an outfit's captions into one line.

    Both models stay loaded (about 30 GB in bf16 for the defaults). Greedy decoding throughout, so the same inputs
    give the same texts; batches are left-padded, so a caption does not depend on its batch.
    """

    name = "vlm"
    reads_images = True  # and the garment maps, for the color fallback
    default_model = DEFAULT_VLM
    model_option = VLM_OPTION
    default_llm = DEFAULT_LLM  # the second model: the summarising LLM
    llm_option = LLM_OPTION

    def __init__(
        self,
        vlm: str = DEFAULT_VLM,
        llm: str = DEFAULT_LLM,
        *,
        device: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 96,
        captions_per_outfit: int | None = None,
        context_tokens: int | None = None,
        revision: str | None = None,
    ) -> None:
        quiet_library_warnings()
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        self.models = {"vlm": vlm, "llm": llm}
        self.device = device or default_device()
        self.dtype = default_dtype(self.device)
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self.captions_per_outfit = captions_per_outfit
        rev = {"revision": revision} if revision else {}
        self.processor = load_pretrained(AutoProcessor.from_pretrained, vlm, VLM_OPTION, **rev)
        self.processor.tokenizer.padding_side = "left"  # decoder-only batching: prompts end where answers start
        if getattr(self.processor, "chat_template", None) is None:
            raise UserError(f"{VLM_OPTION} {vlm}: its processor has no chat template; pass a chat/instruct VLM")
        vlm_model = load_pretrained(
            AutoModelForImageTextToText.from_pretrained, vlm, VLM_OPTION, dtype=self.dtype, **rev
        )
        self.vlm = vlm_model.to(self.device).eval()
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, llm, LLM_OPTION, **rev)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.chat_template is None:
            raise UserError(f"{LLM_OPTION} {llm}: its tokenizer has no chat template; pass an instruct/chat model")
        if self.tokenizer.pad_token is None:  # Llama 3 ships none; pad positions are masked out anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        llm_model = load_pretrained(AutoModelForCausalLM.from_pretrained, llm, LLM_OPTION, dtype=self.dtype, **rev)
        self.llm = llm_model.to(self.device).eval()
        self.context_tokens = _context_size(self.llm.config, self.tokenizer, context_tokens)
        self._color = ColorDescriber()

    @classmethod
    def model_refs(cls, opts: BuildOptions) -> dict[str, str]:
        return {
            cls.model_option: opts.vlm_model or cls.default_model,
            cls.llm_option: opts.llm_model or cls.default_llm,
        }

    @classmethod
    def from_options(cls, opts: BuildOptions, spec: SourceDataset) -> VLMDescriber:
        return cls(
            opts.vlm_model or cls.default_model,
            opts.llm_model or cls.default_llm,
            batch_size=opts.batch_size,
            captions_per_outfit=opts.captions_per_outfit,
        )

    # -- captions ---------------------------------------------------------------------------------------------
    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image, in batches of `batch_size`."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_QUESTION}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        captions: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            inputs = self.processor(
                images=batch,
                text=[prompt] * len(batch),
                return_tensors="pt",
                padding=True,
                add_special_tokens=not _starts_with_bos(prompt, self.processor.tokenizer),
            )
            captions.extend(self._generate(self.vlm, self.processor.tokenizer, inputs))
        return [" ".join(c.split()) for c in captions]

    def _generate(self, model, tokenizer, inputs) -> list[str]:
        import torch

        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        return tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    # -- summaries --------------------------------------------------------------------------------------------
    def _prompt(self, captions: list[str], strict: bool) -> str:
        numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(captions, 1))
        text = SUMMARY_PROMPT.format(n=len(captions), captions=numbered) + (STRICT_SUFFIX if strict else "")
        # All in one user turn: some chat templates (Gemma, Mistral) reject a system role.
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )

    def _prompt_tokens(self, prompt: str) -> int:
        add = not _starts_with_bos(prompt, self.tokenizer)
        return len(self.tokenizer(prompt, add_special_tokens=add)["input_ids"])

    def fit_captions(self, captions: list[str]) -> list[str]:
        """All captions if the (strict, longer) prompt fits the LLM's context, else the most that fit, evenly spread."""
        budget = self.context_tokens - self.max_new_tokens

        def fits(k: int) -> bool:
            return self._prompt_tokens(self._prompt([captions[i] for i in _spread(len(captions), k)], True)) <= budget

        if fits(len(captions)):
            return captions
        lo, hi = 0, len(captions)  # fits(hi) is False; find the largest k that fits (prompt length grows with k)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return [captions[i] for i in _spread(len(captions), lo)]  # lo == 0: not even one fits

    def _summarise_once(self, prompts: list[str]) -> list[str]:
        """Raw LLM answers to rendered chat prompts (the seam tests replace)."""
        answers: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            inputs = self.tokenizer(
                batch,
                return_tensors="pt",
                padding=True,
                add_special_tokens=not _starts_with_bos(batch[0], self.tokenizer),
            )
            answers.extend(self._generate(self.llm, self.tokenizer, inputs))
        return answers

    def describe(self, outfits: list[OutfitImages]) -> list[OutfitText]:
        # Caption the chosen images of all outfits together, so batches fill up across small outfits.
        chosen = [[o.images[i] for i in _spread(len(o.images), self.captions_per_outfit)] for o in outfits]
        flat = self.caption([im for images in chosen for im in images])
        per_outfit: list[list[str]] = []
        for images in chosen:
            per_outfit.append(flat[: len(images)])
            flat = flat[len(images) :]

        results = [
            OutfitText(o.clothes_id, o.pid, "", "", "", describer=self.name, models=dict(self.models)) for o in outfits
        ]
        used = [self.fit_captions(c) for c in per_outfit]
        for res, all_caps, caps in zip(results, per_outfit, used, strict=True):
            res.captions, res.captions_dropped = caps, len(all_caps) - len(caps)
            if res.captions_dropped:
                log.warning(
                    "outfit %s: %d of %d captions did not fit the LLM context (%d tokens); used %d, evenly spread",
                    res.clothes_id,
                    res.captions_dropped,
                    len(all_caps),
                    self.context_tokens,
                    len(caps),
                )
        # First a plain prompt, then one stricter retry for answers that do not parse.
        todo = [i for i, caps in enumerate(used) if caps]
        for strict in (False, True):
            if not todo:
                break
            answers = self._summarise_once([self._prompt(used[i], strict) for i in todo])
            for i, answer in zip(todo, answers, strict=True):
                results[i].raw, results[i].attempts = answer, results[i].attempts + 1
                parts = parse_outfit_text(answer)
                if parts:
                    results[i].top, results[i].bottom, results[i].shoes = parts
            todo = [i for i in todo if not results[i].top]

        for outfit, res in zip(outfits, results, strict=True):
            if res.top:
                continue
            why = (
                f"LLM answer malformed after {res.attempts} attempts"
                if res.captions
                else ("no images" if not outfit.images else "not one caption fits the LLM context")
            )
            color = self._color.describe_one(outfit)
            res.top, res.bottom, res.shoes = color.top, color.bottom, color.shoes
            res.fallback = f"{why}; used the color describer's answer"
        return results


def _starts_with_bos(prompt: str, tokenizer) -> bool:
    """A chat template that writes BOS itself must not get a second one from the tokenizer."""
    return bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)


def _context_size(config, tokenizer, cap: int | None) -> int:
    """Prompt + answer tokens the LLM takes: its position limit, the tokenizer's limit and the user's cap."""
    config = getattr(config, "text_config", None) or config
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length, cap]
    return min(int(n) for n in limits if n and n < 10**9)  # unset limits are huge sentinels


def _spread(n: int, k: int | None) -> list[int]:
    """`k` indices evenly spaced over range(n) (all of them when k is None or ≥ n); deterministic."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return [int(i) for i in np.linspace(0, n - 1, k).round().astype(int)]
