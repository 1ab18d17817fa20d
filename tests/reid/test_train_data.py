"""Training data at scale: decoding in DataLoader workers vs the in-memory cache, CAL's video clips, validation
during training (`--eval-every`, never on test data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_ccvid, write_prcc

from dlcr_data.errors import UserError
from dlcr_data.reid.config import TrainConfig
from dlcr_data.reid.data import CACHE_BUDGET, TrainSet, dense_pieces, temporal_crop
from dlcr_data.reid.train import train
from dlcr_data.reid.validation import keep_if_best


def tiny(root: Path, out: Path, dataset: str = "demo", **kw) -> TrainConfig:
    base = dict(dataset=dataset, root=str(root), out=str(out), scratch="resnet-tiny", image_size=(64, 32))
    base |= dict(epochs=2, batch_p=2, batch_k=4, cal_start_epoch=1, lr=1e-3)
    return TrainConfig(**(base | kw))


# -- CAL's clips --------------------------------------------------------------------------------------------------
class Fixed:
    """An rng whose draws are chosen by the test: `integers(lo, hi)` returns lo + offset (clamped)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def integers(self, lo: int, hi: int) -> int:
        return min(lo + self.offset, hi - 1)


def test_temporal_crop_follows_cals_three_cases():
    # >= 8 x 4 = 32 frames: 8 frames 4 apart; the start ranges over 0 .. 40 - 28 - 1 = 11
    assert temporal_crop(40, 8, 4, Fixed(0)) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert temporal_crop(40, 8, 4, Fixed(99)) == [11, 15, 19, 23, 27, 31, 35, 39]
    # 8..31 frames: 8 segments of 20 // 8 = 2 frames (frames 16-19 unused), one from each
    assert temporal_crop(20, 8, 4, Fixed(0)) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert temporal_crop(20, 8, 4, Fixed(1)) == [1, 3, 5, 7, 9, 11, 13, 15]
    # fewer than 8: with replacement, sorted
    frames = temporal_crop(3, 8, 4, np.random.default_rng(0))
    assert len(frames) == 8 and frames == sorted(frames) and set(frames) <= {0, 1, 2}


def test_dense_pieces_as_cal():
    assert dense_pieces(40, 64) == [(0, 40)]
    assert dense_pieces(64, 64) == [(0, 64)]
    assert dense_pieces(127, 64) == [(0, 127)]  # the last piece takes the rest
    assert dense_pieces(200, 64) == [(0, 64), (64, 128), (128, 200)]


def test_clip_training_on_ccvid(tmp_path):
    root = write_ccvid(tmp_path, broken=False).root.parent
    data = TrainSet.from_dataset("ccvid", root, (32, 16), seq_len=8, stride=4, dense_step=16, cache="off")
    # train tracklets of 5, 12, 40 and 3 frames; dense pieces of 16: the 40-frame one gives (0, 16), (16, 40)
    assert len(data) == 5 and sorted(e - s for _, s, e in data.items) == [3, 5, 12, 16, 24]
    clip, item, key = data[(2, 7)]
    assert clip.shape == (8, 3, 32, 16) and clip.dtype == torch.uint8 and (item, key) == (2, 7)
    out = tmp_path / "run"
    config = tiny(root, out, "ccvid", seq_len=8, dense_step=16, image_size=(32, 16), batch_p=2, batch_k=2, epochs=1)
    train(config)
    assert json.loads((out / "history.json").read_text())[0]["loss_id"] > 0


# -- streaming vs cache -----------------------------------------------------------------------------------------------
def test_workers_and_cache_give_the_same_run(tiny_demo, tmp_path):
    """Decoding in 2 DataLoader workers and decoding once into memory train the very same model."""
    cached = TrainSet.from_dataset("demo", tiny_demo, (64, 32), cache="auto")
    assert cached.cache and cached.cache_bytes() == 32 * 3 * 64 * 32 <= CACHE_BUDGET
    assert not TrainSet.from_dataset("demo", tiny_demo, (64, 32), cache="off").cache
    train(tiny(tiny_demo, tmp_path / "cache", cache="on"))
    train(tiny(tiny_demo, tmp_path / "stream", cache="off", num_workers=2))
    runs = [json.loads((tmp_path / name / "history.json").read_text()) for name in ("cache", "stream")]
    for a, b in zip(*runs, strict=True):
        assert {k: v for k, v in a.items() if k not in ("seconds", "images_per_s")} == {
            k: v for k, v in b.items() if k not in ("seconds", "images_per_s")
        }
    saved = json.loads((tmp_path / "stream" / "run_config.json").read_text())
    assert saved == tiny(tiny_demo, tmp_path / "stream", cache="off", num_workers=2).to_dict()


# -- validation ---------------------------------------------------------------------------------------------------
def test_eval_every_uses_prccs_val_split_and_keeps_the_best(tmp_path):
    root = write_prcc(tmp_path, broken=False).root.parent
    out = tmp_path / "run"
    train(tiny(root, out, "prcc", image_size=(32, 16), batch_k=2, epochs=3, eval_every=1, keep_best=True))
    history = json.loads((out / "history.json").read_text())
    scores = [h["val"]["select"] for h in history]
    # val: one identity (004) with cameras A, B and C; its C image against its A image is the only query
    assert [h["val"]["val_cc"]["num_valid"] for h in history] == [1, 1, 1]
    assert all(s == 100.0 for s in scores)  # one identity in the val gallery: rank-1 is certain
    best = json.loads((out / "best" / "trainer_state.json").read_text())
    assert best["epoch"] == 1  # ties keep the earlier epoch


def test_keep_if_best_copies_only_a_strictly_better_checkpoint(tmp_path):
    for epoch in (1, 2, 3, 4):
        (tmp_path / f"e{epoch}").mkdir()
        (tmp_path / f"e{epoch}" / "epoch.txt").write_text(str(epoch))
    history = []
    for epoch, score in ((1, 10.0), (2, 30.0), (3, 30.0), (4, 20.0)):
        history.append({"epoch": epoch, "val": {"select": score}})
        keep_if_best(tmp_path, tmp_path / f"e{epoch}", history)
    assert (tmp_path / "best" / "epoch.txt").read_text() == "2"


def test_eval_every_is_refused_without_a_validation_split(tiny_demo, tmp_path):
    with pytest.raises(UserError, match="demo has no validation split"):
        train(tiny(tiny_demo, tmp_path / "run", eval_every=1))
    with pytest.raises(UserError, match="--keep-best selects on validation"):
        tiny(tiny_demo, tmp_path / "run", keep_best=True)
