"""The json metadata of one generated variant: a `records.SampleMeta`, from its plan entry and what made it.

Models are named as published (`pretrained.published_ref`): a Hub id, or `local:<weights hash>` for a local folder,
never its path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from dlcr_data.pretrained import published_ref
from dlcr_data.records import Record, SampleMeta

if TYPE_CHECKING:
    from dlcr_data.build.annotate.body_shape import BodyShapes
    from dlcr_data.build.plan import PlannedVariant


def variant_meta(
    dataset: str,
    variant: PlannedVariant,
    source: Record,
    image: Image.Image,
    generator: str,
    model: str | None,
    shapes: BodyShapes | None = None,
    gate_model: str | None = None,
    gate_score: float | None = None,
) -> SampleMeta:
    """The metadata of `variant` of `source`, generated as `image` by `generator` with `model` (None: model-free);
    body-shape and identity-gate fields are empty when those are off. `model` and `gate_model` are references as
    passed (id or folder): they are published as `published_ref` names them."""
    scores = shapes.scores.get(variant.source_key) if shapes is not None else None
    return SampleMeta(
        dataset=dataset,
        split=variant.split,
        source_key=variant.source_key,
        pid=source.pid,
        camid=source.camid,
        source_clothes_id=variant.source_clothes_id,
        target_clothes_id=variant.target_clothes_id,
        target_text=variant.target_text,
        prompt=variant.prompt,
        negative_prompt=variant.negative_prompt,
        generator=generator,
        model=published_ref(model),
        seed=variant.seed,
        variant=variant.variant,
        width=image.width,
        height=image.height,
        structure_key=variant.source_key,
        structure_pid=source.pid,
        appearance_key=variant.appearance_key,
        appearance_pid=variant.appearance_pid,
        sampling=variant.sampling,
        cluster_id=variant.cluster_id,
        body_shape_method=published_method(shapes.method) if scores is not None else "",
        body_shape_vocabulary=shapes.vocabulary if scores is not None else "",
        body_shape_scores=scores or [],
        body_shape_top=shapes.top[variant.source_key] if scores is not None else "",
        gate_model=published_ref(gate_model),
        gate_score=None if gate_score is None else round(float(gate_score), 4),
    )


def published_method(method: str) -> str:
    """A body-shape method as published: "geometry" as is, "clip:<model ref>" with the model as `published_ref`."""
    kind, colon, ref = method.partition(":")
    return f"{kind}:{published_ref(ref)}" if colon else method
