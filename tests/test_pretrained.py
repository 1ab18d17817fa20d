"""Model references (`dlcr_data.pretrained`): one-line errors for missing folders and unreachable ids, and what a
build records of a model: Hub id + commit, or a local folder's weights hash (+ the commit `hf download` recorded)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from huggingface_hub._local_folder import write_download_metadata
from tiny_models import as_hf_download
from typer.testing import CliRunner

from dlcr_data import pretrained
from dlcr_data.cli import app
from dlcr_data.pretrained import (
    ModelNotFound,
    check_ref,
    load_pretrained,
    looks_like_path,
    model_record,
    published_ref,
    weights_hash,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_hash(files: dict[str, bytes]) -> str:
    """The weights hash computed here, independently: `sha256sum` lines of the weight files, sorted by path."""
    listing = "".join(f"{sha256(data)}  {rel}\n" for rel, data in sorted(files.items()))
    return sha256(listing.encode())[:16]


WEIGHTS = {"model.safetensors": b"weights" * 100, "unet/diffusion_pytorch_model.bin": b"unet" * 50}
OTHERS = {"config.json": json.dumps({"_name_or_path": "nvidia/mit-b2"}).encode(), "unet/config.json": b"{}"}


def model_folder(folder: Path, files: dict[str, bytes] | None = None) -> Path:
    for rel, data in (files or {**WEIGHTS, **OTHERS}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Every Hub id is unreachable (the tests are offline anyway): the error must not depend on the network."""
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    pretrained.published_ref.cache_clear()


# -- missing folders vs unreachable ids ---------------------------------------------------------------------------
@pytest.mark.parametrize("ref", ["/an/absolute/path/that/does/not/exist", "./sd", "../sd", "~/no-such-model", "a/b/c"])
def test_a_missing_path_is_no_such_folder(ref):
    assert looks_like_path(ref)
    for check in (lambda: check_ref(ref, "--model"), lambda: model_record(ref, "--model")):
        with pytest.raises(ModelNotFound) as err:
            check()
        assert str(err.value) == f"--model: no such folder: {ref}"
    with pytest.raises(ModelNotFound, match=r"^--model: no such folder: "):
        load_pretrained(lambda ref, **kwargs: pytest.fail("never loaded"), ref, "--model")


def test_an_org_name_beside_a_folder_of_that_org_is_a_mistyped_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert looks_like_path("models/sd-inpaint") and not looks_like_path("runwayml/sd-inpaint")
    with pytest.raises(ModelNotFound, match=r"^--model: no such folder: models/sd-inpaint$"):
        check_ref("models/sd-inpaint", "--model")


@pytest.mark.parametrize("ref", ["nobody/nothing", "gpt2"])
def test_an_unreachable_hub_id_keeps_the_download_advice(ref):
    assert not looks_like_path(ref)
    with pytest.raises(ModelNotFound) as err:
        check_ref(ref, "--model")
    message = str(err.value)
    assert "\n" not in message and f"hf download {ref} --local-dir DIR" in message and "no such folder" not in message


def test_cli_missing_model_folder_is_one_line_exit_2(tiny_demo, tmp_path):
    missing = tmp_path / "no" / "such" / "segformer"
    args = ["build", "demo", "--root", tiny_demo, "--out", tmp_path / "out", "--parser", "segformer"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--parser-model", missing]])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: --parser-model: no such folder: {missing}"]
    assert not (tmp_path / "out").exists()


# -- provenance -----------------------------------------------------------------------------------------------------
def test_a_hub_id_is_recorded_with_its_commit(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: f"/cache/snapshots/{COMMIT}")
    assert model_record("org/name", "--model") == {"id": "org/name", "revision": COMMIT}
    assert published_ref("org/name") == "org/name"


def test_weights_hash_covers_the_weight_files_only(tmp_path):
    folder = model_folder(tmp_path / "m")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "stray.safetensors").write_bytes(b"hidden")  # hidden folders are left out
    h = weights_hash(folder)
    assert h == expected_hash(WEIGHTS) and len(h) == 16
    (folder / "config.json").write_text("{}")  # not a weight file: the hash stays
    assert weights_hash(folder) == h
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert weights_hash(folder) == expected_hash({**WEIGHTS, "model.safetensors": b"other weights"}) != h


def test_a_plain_local_folder_is_recorded_by_its_weights_hash(tmp_path):
    folder = model_folder(tmp_path / "m", {**WEIGHTS, "config.json": b'{"_name_or_path": "/home/me/ckpt"}'})
    record = model_record(str(folder), "--model")
    assert record == {"id": None, "revision": None, "weights": expected_hash(WEIGHTS), "local": True}
    assert published_ref(str(folder)) == f"local:{expected_hash(WEIGHTS)}"
    assert str(tmp_path) not in json.dumps(record)


def test_an_hf_download_folder_is_recorded_with_its_commit(tmp_path):
    folder = as_hf_download(model_folder(tmp_path / "m"), COMMIT)
    assert model_record(str(folder), "--model") == {
        "id": None,  # `hf download` records the commit, not the repo id
        "revision": COMMIT,
        "weights": expected_hash(WEIGHTS),
        "local": True,
        "named_in_config": "nvidia/mit-b2",  # a hint only: the checkpoint the weights were saved from
    }


@pytest.mark.parametrize("change", ["weights", "config", "new weights", "two commits"])
def test_the_commit_is_recorded_only_while_the_metadata_matches_the_files(tmp_path, change):
    folder = as_hf_download(model_folder(tmp_path / "m"), COMMIT)
    if change == "weights":
        (folder / "model.safetensors").write_bytes(b"fine-tuned")
    elif change == "config":
        (folder / "unet" / "config.json").write_text('{"changed": true}')
    elif change == "new weights":
        (folder / "lora.safetensors").write_bytes(b"added after the download")
    else:
        write_download_metadata(folder, "unet/config.json", "f" * 40, hashlib.sha1(b"blob 2\0{}").hexdigest())
    record = model_record(str(folder), "--model")
    assert record["revision"] is None and record["weights"] == weights_hash(folder)
