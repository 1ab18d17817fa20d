"""`dlcr-data evaluate`: a checkpoint on a dataset's protocols, with and without DLCR's test-time refinement.

Features come from the checkpoint (flip-augmented, L2-normalised; CCVID tracklets pool their test clips), every
protocol of the dataset is evaluated (`protocols.PROTOCOLS`), and with `refine=K` the K first generated variants of
each query (the build's query split) re-score the query's top gallery entries (`refine.evaluate_refined`, by
`refine_rule`: DLCR's released rule by default), chunk by chunk: no query x gallery matrix is held.
Evaluation never builds: a build without them is a one-line error naming the `dlcr-data build` command that makes
them. Results go to `metrics.json` and a CMC-curve PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from dlcr_data import loaders
from dlcr_data.errors import UserError
from dlcr_data.files import write_bytes_atomic, write_json_atomic
from dlcr_data.loaders.vcclothes import filter_cameras
from dlcr_data.manifest import MANIFEST_FILE, local_config, read_manifest
from dlcr_data.records import Record
from dlcr_data.reid.checkpoints import load_checkpoint
from dlcr_data.reid.config import EvaluateOptions
from dlcr_data.reid.features import extract_features, extract_images
from dlcr_data.reid.model import ReIDModel
from dlcr_data.reid.plots import cmc_plot
from dlcr_data.reid.protocols import Protocol, clip_indices, evaluate_dataset, protocols_for, tracklet_feature
from dlcr_data.reid.refine import RULES, evaluate_refined

SEQ_LEN = 8  # CCVID test clips (docs/datasets.md §2.4)


def summarise(metrics: dict) -> dict:
    """The figures a table shows (percent), plus the full CMC."""
    cmc = [float(v) for v in metrics["cmc"]]
    at = {k: 100 * cmc[k - 1] if len(cmc) >= k else float("nan") for k in (1, 5, 10)}
    return {
        "rank1": at[1],
        "rank5": at[5],
        "rank10": at[10],
        "mAP": 100 * float(metrics["mAP"]),
        "mINP": 100 * float(metrics["mINP"]),
        "num_valid": int(metrics["num_valid"]),
        "cmc": cmc,
    }


def dataset_features(model: ReIDModel, records: Sequence[Record], root: Path, batch_size: int) -> dict:
    """Record key -> feature; a video tracklet pools the features of its CAL test clips."""
    clips = {r.key: clip_indices(len(r.frames), SEQ_LEN) for r in records if r.frames}

    def clip_frames(r: Record) -> list[str]:
        return [r.frames[i] for clip in clips[r.key] for i in clip]

    feats = extract_features(model, records, root, batch_size, clip_fn=clip_frames)
    for key in clips:  # (n_clips * SEQ_LEN, D) frames -> clip means -> tracklet feature
        feats[key] = tracklet_feature(feats[key].view(len(clips[key]), SEQ_LEN, -1).mean(1))
    return feats


def query_variants(
    expanded: str, dataset: str, split: str, keys: list[str], k: int, model: ReIDModel, own: torch.Tensor
) -> torch.Tensor:
    """(len(keys), k, D) features of the first k generated variants of each query, from the build's `split`.

    A build filtered by the identity gate may hold fewer than k variants of a query: the rejected ones are stood
    in for by the query itself (`own`, (len(keys), D)), so its vote goes to its original ranking, not to a variant
    the gate judged to have lost the identity."""
    from dlcr_data.expanded import load_expanded

    try:
        variants = load_expanded(expanded, dataset, split=split)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(f"{expanded}: no {dataset} {split} variants to refine with ({err})") from None
    gated = bool(variants.metas and variants.metas[0].get("gate_model"))  # a build is gated throughout
    missing = [key for key in keys if len(variants.index.get(key, [])) < k]
    if missing and not gated:
        raise UserError(
            f"{expanded}: {len(missing)} {split} image(s) have fewer than {k} variants (e.g. {missing[0]}); "
            f"build more with --variants or use a smaller --refine"
        )
    counts = [min(k, len(variants.index.get(key, []))) for key in keys]
    rows = [i for key, n in zip(keys, counts, strict=True) for i in variants.index.get(key, [])[:n]]
    out = own[:, None, :].repeat(1, k, 1)
    if rows:
        slots = torch.repeat_interleave(torch.arange(len(keys)), torch.tensor(counts))
        positions = torch.cat([torch.arange(n) for n in counts])
        out[slots, positions] = extract_images(model, variants.images(rows)).to(out.dtype)
    return out


class MissingQueryVariants(UserError):
    """A local build lacks the query variants refinement needs. `config` is the build's recorded options with the
    query split added and at least `k` variants: what the CLI turns into the exact `dlcr-data build` command."""

    def __init__(self, expanded: str, dataset: str, split: str, k: int, config: dict) -> None:
        super().__init__(f"{expanded} lacks {k} {dataset} {split} variants per image to refine with")
        self.expanded, self.dataset, self.config = expanded, dataset, config


def missing_variants_error(expanded: str, dataset: str, split: str, k: int, err: UserError) -> UserError:
    """`err` (no or too few `split` variants in `expanded`), or, for a local build, a `MissingQueryVariants` with
    the build's own recorded options, `split` added and at least `k` variants."""
    if not (Path(expanded) / MANIFEST_FILE).is_file():
        return err  # a Hub repo, or not a build at all: nothing to derive a command from
    entry = read_manifest(Path(expanded))["builds"].get(dataset)
    if entry is None:
        return UserError(f"{expanded} holds no {dataset} build to refine with; build one with --splits train,{split}")
    if "release" in entry:  # imported, not built: no options to rebuild from
        return UserError(
            f"{expanded} is an imported DLCR release without {k} {split} variants per image; refine with a build "
            f"that has them: dlcr-data build {dataset} --splits train,{split} --variants {k} --out DIR"
        )
    config = local_config(Path(expanded), dataset, entry)  # as given: with its --root and model folders
    splits = [*config["splits"], *([split] if split not in config["splits"] else [])]
    return MissingQueryVariants(
        expanded, dataset, split, k, {**config, "splits": splits, "variants": max(k, config["variants"])}
    )


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    dataset: str,
    root: str | os.PathLike | None = None,
    *,
    refine: int = EvaluateOptions.refine,
    expanded: str | None = EvaluateOptions.expanded,
    top_ids: int = EvaluateOptions.top_ids,
    refine_rule: str = EvaluateOptions.refine_rule,
    protocols: Sequence[str] | None = None,
    batch_size: int = EvaluateOptions.batch_size,
    device: str | None = None,
    out: str | os.PathLike | None = None,
) -> dict:
    """Metrics per protocol (and refined, with `refine` > 0); written to `out/metrics.json` + `out/cmc.png`."""
    if refine_rule not in RULES:  # before any loading: a typo costs nothing
        raise UserError(f"--refine-rule must be one of {', '.join(RULES)}, not {refine_rule!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, _, state = load_checkpoint(checkpoint, device)
    loaded = loaders.load(dataset, root)
    chosen = protocols_for(dataset, protocols)
    needed = sorted({s for p in chosen for s in (p.query_split, p.gallery_split)})
    feats = dataset_features(model, [r for s in needed for r in loaded[s]], loaded.root, batch_size)
    plain = evaluate_dataset(dataset, loaded.splits, feats, protocols=chosen)
    result = {
        "dataset": dataset,
        "checkpoint": str(checkpoint),
        "epoch": state.epoch,
        "protocols": {name: summarise(m) for name, m in plain.items()},
    }
    if refine:
        if not expanded:
            raise UserError("--refine needs --expanded: the build (folder or Hub repo) holding query variants")
        result["refine"] = {"variants": refine, "top_ids": top_ids, "rule": refine_rule}
        result["refined"] = {
            p.name: summarise(_refined(p, loaded, feats, model, expanded, dataset, refine, top_ids, refine_rule))
            for p in chosen
        }
    if out is not None:
        out = Path(out)
        write_json_atomic(out / "metrics.json", result)
        write_bytes_atomic(out / "cmc.png", cmc_plot(result))
    return result


def _refined(
    p: Protocol, loaded, feats: dict, model: ReIDModel, expanded: str, dataset: str, k: int, top_ids: int, rule: str
) -> dict:
    query = filter_cameras(loaded[p.query_split], p.cameras)
    gallery = filter_cameras(loaded[p.gallery_split], p.cameras)
    keys = [r.key for r in query]
    own = torch.stack([feats[key] for key in keys])
    try:
        qv = query_variants(expanded, dataset, p.query_split, keys, k, model, own)
    except UserError as err:
        raise missing_variants_error(expanded, dataset, p.query_split, k, err) from None
    return evaluate_refined(
        own,
        qv,
        torch.stack([feats[r.key] for r in gallery]),
        [r.pid for r in query],
        [r.pid for r in gallery],
        [r.camid for r in query],
        [r.camid for r in gallery],
        [r.clothes_id for r in query],
        [r.clothes_id for r in gallery],
        mode=p.mode,  # refinement sees the gallery as the protocol does: its junk is hidden
        rule=rule,
        top=top_ids,
    )
