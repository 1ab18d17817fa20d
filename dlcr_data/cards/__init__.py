"""The dataset card: `OUT/README.md` and `OUT/preview.png`, rendered from the build manifest.

`context.py` turns the manifest into plain data, `dataset_card.md` (a Jinja template rendered by
`huggingface_hub.DatasetCard`) holds all of the card's Markdown, and `preview.py` draws the contact sheet.
"""

from __future__ import annotations

from pathlib import Path

from dlcr_data.cards.context import PREVIEW_FILE, card_context, card_metadata
from dlcr_data.files import write_text_atomic
from dlcr_data.manifest import read_manifest

CARD_FILE = "README.md"
TEMPLATE = Path(__file__).parent / "dataset_card.md"


def render_card(out: Path, repo_id: str = "USER/REPO", include_source: bool = False, preview_rows: int = 6) -> Path:
    """Write `OUT/README.md` (and `OUT/preview.png` if missing) from the manifest; returns the card path."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from dlcr_data.cards.preview import contact_sheet, preview_split
    from dlcr_data.files import save_png_atomic

    out = Path(out)
    manifest = read_manifest(out)
    preview = out / PREVIEW_FILE
    shown = preview_split(manifest)  # the first dataset with a shard, its first split; None: no preview possible
    if not preview.exists() and shown is not None:
        save_png_atomic(contact_sheet(out, n=preview_rows, dataset=shown[0], split=shown[1]), preview)
    context = card_context(out, manifest, repo_id, include_source)
    card = DatasetCard.from_template(
        DatasetCardData(**card_metadata(manifest, include_source)), template_path=str(TEMPLATE), **context
    )
    path = out / CARD_FILE
    write_text_atomic(path, str(card))
    return path


__all__ = ["CARD_FILE", "PREVIEW_FILE", "render_card"]
