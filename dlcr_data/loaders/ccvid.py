"""CCVID (Gu et al., CVPR 2022), video: `{train,query,gallery}.txt` list `session*/<pid>_<xx>/` folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import ClassVar

from dlcr_data.loaders.base import ReleaseLayout, SourceDataset, SplitStats, relpath
from dlcr_data.records import Record, Skipped, make_key

# Sessions 1 and 2 share camera numbers; CAL shifts session 3 by 12 to keep its cameras apart.
SESSION3_OFFSET = 12


def parse_line(line: str) -> tuple[str, int, str] | str:
    """`session3/001_02<TAB>001<TAB>u1_l0_s0_c0_a0` -> (path, 1, "1_u1_l0_s0_c0_a0"); else the reason."""
    fields = line.split()
    if len(fields) != 3:
        return f"expected 3 fields (tracklet_path pid clothes_label), got {len(fields)}"
    tracklet, pid, clothes = fields
    if not (pid.isascii() and pid.isdigit()):
        return f"pid {pid!r} is not an integer"
    return tracklet, int(pid), f"{int(pid)}_{clothes}"


def parse_camid(tracklet: str) -> int | None:
    """`session1/001_02` -> 1, `session3/001_02` -> 13; None if the folder has no `_<int>` after the pid.

    CAL reads int(text after the first `_`) (+12 in session 3), i.e. 1..24 for CCVID's `_01`.. folders. Only
    equality of camids matters to evaluation, so we subtract 1 to honour the 0-based `Record.camid` contract;
    the partition into cameras is exactly CAL's. A `_00` folder would go negative and is refused.
    """
    parts = PurePosixPath(tracklet).parts
    _, sep, cam = parts[-1].partition("_")
    if not sep or not (cam.isascii() and cam.isdigit()) or int(cam) < 1:
        return None
    return int(cam) - 1 + (SESSION3_OFFSET if parts[0] == "session3" else 0)


def _normalise(tracklet: str) -> str | None:
    """`session1//001_01/` -> `session1/001_01`; None for a path that could leave the root."""
    p = PurePosixPath(tracklet)
    if not p.parts or p.is_absolute() or ".." in p.parts:
        return None
    return p.as_posix()


class CCVID(SourceDataset):
    name = "ccvid"
    dirname = "CCVID"
    splits = ("train", "query", "gallery")
    required = ("train.txt", "query.txt", "gallery.txt")
    video = True
    layout = """
CCVID/
  train.txt, query.txt, gallery.txt   (lines: <tracklet_path> <pid> <clothes_label>)
  session1/<pid>_<xx>/<frame>.jpg   (zero-padded frame names)
  session2/<pid>_<xx>/<frame>.jpg
  session3/<pid>_<xx>/<frame>.jpg
"""
    stats: ClassVar[dict[str, SplitStats]] = {
        "train": SplitStats(images=948, ids=75, note="unconfirmed; total 226 ids / 2,856 confirmed"),
        "query": SplitStats(images=834, ids=151, note="unconfirmed"),
        "gallery": SplitStats(images=1074, ids=151, note="unconfirmed"),
    }
    # Tracklets and their labels come from the list files: a strip's name does not give them.
    release_layout = ReleaseLayout(
        ("session1", "session2", "session3"), "session<n>/<pid>_<xx>/<frame>.png", needs_root=True
    )
    obtain = "CCVID: follow the download link in the CAL README (https://github.com/guxinqian/Simple-CCReID)."
    citation = (
        "@inproceedings{gu2022cal, title={Clothes-Changing Person Re-identification with RGB Modality Only}, "
        "author={Gu, Xinqian and Chang, Hong and Ma, Bingpeng and Bai, Shutao and Shan, Shiguang and Chen, "
        "Xilin}, booktitle={CVPR}, year={2022}}"
    )

    def scan(self, root: Path) -> Iterator[Record | Skipped]:
        # Lines keep the list files' order (as CAL), which is deterministic; frames are sorted by name.
        for split in self.splits:
            listing = f"{split}.txt"
            lines = (root / listing).read_text(encoding="utf-8").splitlines()
            for lineno, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                parsed = parse_line(line)
                if isinstance(parsed, str):
                    yield Skipped(f"{listing}:{lineno}", parsed)
                    continue
                yield self._tracklet(root, split, *parsed)

    def _tracklet(self, root: Path, split: str, listed: str, pid: int, clothes_id: str) -> Record | Skipped:
        tracklet = _normalise(listed)
        if tracklet is None:
            return Skipped(listed, "tracklet path must be relative and inside the dataset root")
        camid = parse_camid(tracklet)
        if camid is None:
            return Skipped(tracklet, "tracklet folder does not match <pid>_<xx> with xx >= 01")
        folder = root / tracklet
        if not folder.is_dir():
            return Skipped(tracklet, "tracklet folder does not exist")
        # CAL globs `*` and sorts lexicographically: frame names must be zero-padded.
        frames = tuple(sorted(relpath(p, root) for p in folder.iterdir() if p.is_file()))
        if not frames:
            return Skipped(tracklet, "tracklet folder has no frames")
        return Record(make_key(split, tracklet), tracklet, pid, camid, clothes_id, split, frames)
