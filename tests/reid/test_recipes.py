"""Each dataset's training recipe: CAL's released configs, DLCR's stage 2, overrides, `train --dry-run`.

The expected values are read off the peers' files (Simple-CCReID f773d01: configs/default_img.py,
configs/res50_cels_cal.yaml, configs/res50_cels_cal_tri_16x4.yaml, configs/default_vid.py, script.sh; DLCR b3642aa:
Simple-CCReID/configs/default_img.py), not off `recipes.py`.
"""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from typer.testing import CliRunner

from dlcr_data.cli import app
from dlcr_data.errors import UserError
from dlcr_data.reid.config import TrainConfig
from dlcr_data.reid.recipes import CAL_IMAGE, RECIPES, resolve, sources


@pytest.mark.parametrize("dataset", ["prcc", "ltcc", "vcclothes"])
def test_cals_image_recipe(dataset):
    c = resolve(dataset)
    assert c.image_size == (384, 192) and c.seq_len == 1
    assert (c.batch_p * c.batch_k, c.batch_k) == (2 * 32, 8)  # 2 GPUs x TRAIN_BATCH 32, NUM_INSTANCES 8
    assert (c.lr, c.weight_decay, c.epochs, c.lr_milestones, c.lr_gamma) == (3.5e-4, 5e-4, 60, (20, 40), 0.1)
    assert c.triplet_weight == 0.0  # PAIR_LOSS_WEIGHT 0
    assert (c.method, c.cal_start_epoch, c.cal_epsilon, c.clothes_scale) == ("cal", 25, 0.1, 16.0)
    assert (c.pooling, c.last_stride_1, c.label_smoothing, c.augmentation) == ("maxavg", True, 0.1, "cal")
    assert c.seed == 1 and c.recipe == "cal-image"


def test_dlcr_stage2_keeps_the_images_per_step():
    """DLCR trained on 1 GPU: 32 real (4 chunks x 8) + 32 generated = 64 images per step, as CAL's 64 real."""
    c = resolve("prcc", "out/prcc")
    assert (c.batch_p, c.batch_k, c.expanded, c.recipe) == (4, 8, "out/prcc", "cal-image+dlcr")
    assert c.progressive_thresholds == (5, 10, 15) and c.progressive_fractions == (0.25, 0.5, 0.75)


def test_last_and_ccvid_recipes():
    last = resolve("last")
    assert (last.batch_p * last.batch_k, last.batch_k) == (2 * 32, 4)  # "16x4": 2 GPUs x 32, K 4
    assert (last.triplet_weight, last.triplet_margin, last.triplet_distance) == (1.0, 0.3, "cosine")
    assert last.image_size == (384, 192) and last.epochs == 60
    video = resolve("ccvid")
    assert (video.seq_len, video.sampling_stride, video.image_size) == (8, 4, (256, 128))
    assert (video.epochs, video.lr_milestones, video.cal_start_epoch) == (150, (40, 80, 120), 50)
    assert (video.batch_p * video.batch_k, video.batch_k) == (2 * 16, 4)  # 2 GPUs x 16 clips, K 4
    assert (video.pooling, video.label_smoothing, video.augmentation) == ("max", 0.0, "cal-video")


def test_overrides_win_and_unknown_options_are_refused():
    c = resolve("prcc", None, image_size=(256, 128), triplet_weight=1.0, batch_p=None)
    assert (c.image_size, c.triplet_weight, c.batch_p) == ((256, 128), 1.0, 8)  # None: not given
    with pytest.raises(UserError, match="not a training option: colour"):
        resolve("prcc", colour="red")


def test_every_recipe_value_names_its_peer_file():
    names = {f.name for f in fields(TrainConfig)}
    for recipe in [CAL_IMAGE, *RECIPES.values()]:
        assert set(recipe.values) <= set(recipe.sources), recipe.name
        assert set(recipe.sources) <= names, set(recipe.sources) - names
    assert "TRAIN_BATCH = MAX_BATCH_SIZE // 2" in sources("prcc", expanded=True)["batch_p"]


def test_train_dry_run_prints_the_resolved_config_and_trains_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["train", "ltcc", "--out", str(out), "--expanded", "b", "--batch-k", "4", "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["config"] == resolve("ltcc", "b", out=str(out), batch_k=4).to_dict()
    assert printed["config"]["batch_p"] == 4 and printed["config"]["batch_k"] == 4
    assert "default_img.py" in printed["sources"]["lr"]
    assert not out.exists()
    bad = CliRunner().invoke(app, ["train", "ltcc", "--out", str(out), "--lr-milestones", "a,b", "--dry-run"])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.output
