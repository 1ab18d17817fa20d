"""What every stage of a build shares: the options, the process state, the loaded source, the chosen backends and
the out folder.

`BuildContext.start` loads the source dataset; `claim_out_folder` makes the out folder this build's (a rerun
with the same options continues, other options need `--overwrite`). `OutFolder` is that out-folder handling on its
own: `import-release` uses it directly.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dlcr_data import loaders
from dlcr_data.build.backends import Backend
from dlcr_data.build.options import BuildOptions
from dlcr_data.errors import UserError
from dlcr_data.files import remove_stale_temps, write_json_atomic
from dlcr_data.manifest import drop_entry, read_json
from dlcr_data.progress import Reporter, process_state
from dlcr_data.records import Record


@dataclass(frozen=True)
class OutFolder:
    """One dataset's part of an out folder: its shards in `OUT/<dataset>/`, its caches in `OUT/work/<dataset>/`
    (what makes a rerun resume), and the process state that decides who writes what."""

    out: Path
    dataset: str
    state: object  # accelerate.PartialState

    @property
    def work(self) -> Path:
        return self.out / "work" / self.dataset

    @property
    def shards(self) -> Path:
        return self.out / self.dataset

    def main(self) -> bool:
        return self.state.is_main_process

    def claim(self, fingerprint: dict, overwrite: bool) -> None:
        """A rerun must use the same options (it continues); other options need --overwrite (it starts over).
        `fingerprint`: what determines the output bytes, recorded in `work/config.json`."""
        config_path = self.work / "config.json"
        previous = read_json(config_path)  # read by every process before anyone writes
        if previous is not None and previous != fingerprint and not overwrite:
            changed = sorted(k for k in fingerprint.keys() | previous.keys() if fingerprint.get(k) != previous.get(k))
            raise UserError(
                f"{self.out} holds a {self.dataset} build made with other options ({', '.join(changed)}); "
                f"rerun with the same options to continue it, pass --overwrite to replace it, or use another --out"
            )
        self.state.wait_for_everyone()
        if self.main():
            if overwrite and previous is not None and previous != fingerprint:
                shutil.rmtree(self.work, ignore_errors=True)
                shutil.rmtree(self.shards, ignore_errors=True)
                drop_entry(self.out, self.dataset)
            write_json_atomic(config_path, fingerprint)
            for folder in (self.work, self.shards):  # partial files of a killed run: redone
                remove_stale_temps(folder)
        self.state.wait_for_everyone()

    def remove_own_temps(self) -> None:
        """Ctrl-C can land between opening a temp file and its `with`: sweep this process's temp files."""
        for folder in (self.work, self.shards):
            remove_stale_temps(folder, os.getpid())


@dataclass(frozen=True)
class Backends:
    """The class of each backend family a build uses (`choose.choose_backends`: chosen before any work)."""

    parser: type[Backend]
    describer: type[Backend]
    generator: type[Backend]
    shape_scorer: type[Backend] | None = None  # None: no body-shape scores


@dataclass
class BuildContext:
    """What every stage needs: options, the process state, paths and the loaded source."""

    opts: BuildOptions
    state: object  # accelerate.PartialState
    spec: loaders.SourceDataset
    loaded: loaders.Loaded
    backends: Backends
    reporter: Reporter
    skipped: list[dict] = field(default_factory=list)
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # option -> {"id", "revision"}
    clusters: dict | None = None  # similarity-diversity: the outfit clustering's figures, for the manifest

    @classmethod
    def start(cls, opts: BuildOptions, backends: Backends, reporter: Reporter) -> BuildContext:
        """The process state and the loaded source of resolved `opts`; the splits must exist."""
        state = process_state()
        spec = loaders.get(opts.dataset)
        loaded = spec.load(opts.root)
        unknown = [s for s in opts.splits if s not in spec.splits]
        if unknown:
            raise UserError(f"{spec.name} has no split {', '.join(unknown)}; choose from {', '.join(spec.splits)}")
        ctx = cls(opts, state, spec, loaded, backends, reporter)
        ctx.skipped = [{"path": s.path, "reason": s.reason, "stage": "load"} for s in loaded.skipped]
        return ctx

    @property
    def out(self) -> Path:
        return Path(self.opts.out)

    @property
    def folder(self) -> OutFolder:
        return OutFolder(self.out, self.opts.dataset, self.state)

    @property
    def work(self) -> Path:
        """`OUT/work/<dataset>/`: the stages' caches (what makes a rerun resume)."""
        return self.folder.work

    @property
    def masks(self) -> Path:
        """The parse stage's garment maps, `<key>.png`."""
        return self.work / "masks"

    @property
    def root(self) -> Path:
        return self.loaded.root

    def main(self) -> bool:
        return self.state.is_main_process

    # -- the records the stages work on --------------------------------------------------------------------
    def sources(self) -> list[Record]:
        """The images to expand: every built split (each cut to `limit`)."""
        return [r for split in self.opts.splits for r in limited(self.loaded[split], self.opts.limit)]

    def pool(self) -> list[Record]:
        """Every training image: the outfits a target can be, and their donors. As in DLCR (docs/dlcr-method.md
        §2.4) targets come from all training outfits: `limit` cuts the sources, never the pool."""
        return self.loaded.splits.get("train", [])

    def pool_is_parsed(self) -> bool:
        """Whether a stage reads the training images' pixels and garment maps, so the whole pool is parsed: a
        describer that looks at images, a donor-based generator, or the outfit clustering. Otherwise (e.g. the
        oracle describer with recolor) only the sources are parsed, and a `--limit` smoke run stays cheap."""
        backends = self.backends
        return backends.describer.reads_images or backends.generator.needs_donor or self.opts.sampler != "random"

    # -- the out folder ------------------------------------------------------------------------------------
    def claim_out_folder(self) -> None:
        """A rerun must use the same options (it continues); other options need --overwrite (it starts over)."""
        self.folder.claim(self.opts.fingerprint(), self.opts.overwrite)

    def remove_own_temps(self) -> None:
        self.folder.remove_own_temps()


def limited(records: list[Record], limit: int | None) -> list[Record]:
    return records if limit is None else records[:limit]


def unique(records: list[Record]) -> list[Record]:
    """Each record once (by key), in first-seen order."""
    return list({r.key: r for r in records}.values())
