"""Progress and output hygiene: library messages a user cannot act on are dropped, every other warning shows."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import pytest

from dlcr_data.progress import UNACTIONABLE, quiet_library_warnings

# What transformers >= 5 logs once per class when torchvision is missing (transformers/utils/import_utils.py).
TORCHVISION = (
    "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil` for backward "
    "compatibility. Install torchvision to use the default backend, or import `CLIPImageProcessorPil` directly to "
    "silence this warning."
)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log():
    """The messages that reach a handler of the logger transformers emits the torchvision notice on; the logger's
    filters are restored afterwards."""
    logger = logging.getLogger("transformers.utils.import_utils")
    filters, level = list(logger.filters), logger.level
    handler = ListHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield logger, handler.messages
    logger.removeHandler(handler)
    logger.filters[:] = filters
    logger.setLevel(level)


def test_the_torchvision_notice_is_dropped_and_other_warnings_still_show(transformers_log):
    logger, seen = transformers_log
    logger.filters[:] = [f for f in logger.filters if type(f).__name__ != "_DropMatching"]
    logger.warning(TORCHVISION)
    assert seen == [TORCHVISION]  # without the filter it reaches the output (the test is not vacuous)
    seen.clear()
    quiet_library_warnings()
    quiet_library_warnings()  # idempotent: one filter
    assert sum(type(f).__name__ == "_DropMatching" for f in logger.filters) == 1
    logger.warning(TORCHVISION)
    logger.warning(TORCHVISION.replace("CLIP", "Siglip2"))
    logger.warning("Some weights of the model checkpoint were not used")  # any other warning: still shown
    logger.warning("`CLIPImageProcessor` requires torchvision >= 0.27")  # not the exact notice: still shown
    assert seen == [
        "Some weights of the model checkpoint were not used",
        "`CLIPImageProcessor` requires torchvision >= 0.27",
    ]
    assert set(UNACTIONABLE) == {logger.name}


def test_diffusers_import_prints_no_torchvision_notice():
    """Importing diffusers' inpainting pipeline (what the diffusion generator does) after the filter: no notice on
    stderr, in a fresh interpreter (transformers warns once per process)."""
    code = (
        "from dlcr_data.progress import quiet_library_warnings\n"
        "quiet_library_warnings()\n"
        "from diffusers import AutoPipelineForInpainting\n"
        "import transformers\n"
        "transformers.CLIPImageProcessor\n"
        "transformers.utils.logging.get_logger('transformers.utils.import_utils').warning('another warning')\n"
    )

    def start(source: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", source], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def stderr(process: subprocess.Popen) -> str:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        return err

    # both interpreters at once (each import takes seconds); the unfiltered one only where it can show the notice
    quiet = start(code)
    loud = (
        start(code.replace("quiet_library_warnings()\n", ""))
        if importlib.util.find_spec("torchvision") is None
        else None
    )
    quiet = stderr(quiet)
    assert "requires torchvision" not in quiet and "another warning" in quiet
    if loud is not None:  # without the filter the notice shows: not vacuous
        assert "`CLIPImageProcessor` requires torchvision" in stderr(loud)


def test_the_diffusion_generator_installs_the_filter_before_it_loads(transformers_log, tiny_sd):
    from dlcr_data.build.generate.diffusion import DiffusionGenerator

    logger, _ = transformers_log
    logger.filters[:] = [f for f in logger.filters if type(f).__name__ != "_DropMatching"]
    DiffusionGenerator(str(tiny_sd), resolution=(32, 64), steps=1, device="cpu")
    assert [type(f).__name__ for f in logger.filters].count("_DropMatching") == 1
