"""Reading DLCR's released data (the Hub dataset `ihaveamoose/DLCR`): its files, its strips and their texts.

What the release is, as far as its README documents it (docs/dlcr-method.md §2.8; details unconfirmed, so each guess
below is an option of `import-release` or fails with a reason): per original training image one PNG holding its
variants side by side (width = variants x the variant width), named after the original (`X.png`, or its full file
name plus `.png`: `X.jpg.png`), with a `.txt` beside it holding one `top| bottom| shoes` line per variant, in the
original dataset's folder layout. The files are read from an unpacked folder or from one (joined) `.zip`; split
archives (`.zip` + `.z01`, ...) cannot be read by the standard library, so `split_archive_command` says how to join
them.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from PIL import Image

from dlcr_data.errors import UserError
from dlcr_data.loaders import Loaded, ltcc, prcc, vcclothes
from dlcr_data.loaders.base import IMAGE_EXTENSIONS
from dlcr_data.records import Record, Skipped, make_key

STRIP_SUFFIX = ".png"
# `DLCR.z01`, `DLCR.z02`, ... (zip's own split format) and `DLCR.zip.001`, ... (7-Zip / `split` parts)
_SPLIT_PART = re.compile(r"^(?P<base>.+)\.(?:z\d{2,}|zip\.\d{3,})$", re.IGNORECASE)

NameRule = Callable[[PurePosixPath], "Record | str"]


# -- the release's files ------------------------------------------------------------------------------------------
class ReleaseFiles:
    """The files of an unpacked release folder or of one `.zip`, by POSIX path relative to it, sorted."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as err:
                raise UserError(f"--release {self.path}: not a readable zip archive ({err})") from None
            self.names = sorted(i.filename for i in self._zip.infolist() if not i.is_dir())
        else:
            self.names = sorted(
                Path(folder, f).relative_to(self.path).as_posix()
                for folder, _, files in os.walk(self.path)
                for f in files
            )

    def open(self, name: str) -> IO[bytes]:
        return self._zip.open(name) if self._zip is not None else open(self.path / name, "rb")

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def split_archive_command(release: Path) -> str | None:
    """The shell command that joins and unpacks the split zip archive at `release` (a folder holding the parts, or
    one of them), or None when there is none: `zipfile` cannot read archives spanning several files."""
    release = Path(release)
    folder = release if release.is_dir() else release.parent
    candidates = sorted(folder.iterdir()) if folder.is_dir() else []
    bases = sorted({m["base"] for p in candidates if (m := _SPLIT_PART.match(p.name))})
    if release.is_file():  # one part, or the `.zip` of a split set, was named
        own = _SPLIT_PART.match(release.name)
        bases = [b for b in bases if b in (own["base"] if own else None, release.stem, release.name)]
    if not bases:
        return None
    base = bases[0]
    joined, unpacked = folder / f"{base}-joined.zip", folder / base
    if (folder / f"{base}.zip").exists():  # zip's format: `zip -s 0` merges the parts into one archive
        join = ["zip", "-s", "0", str(folder / f"{base}.zip"), "--out", str(joined)]
        command = f"{shlex.join(join)} && {shlex.join(['unzip', str(joined), '-d', str(unpacked)])}"
    else:  # numbered parts of a plain split: concatenated in order, they are the archive
        command = f"cat {shlex.quote(str(folder / base))}.zip.[0-9]* > {shlex.quote(str(joined))}"
        command += f" && {shlex.join(['unzip', str(joined), '-d', str(unpacked)])}"
    return command


# -- where each dataset's strips lie, and how their names parse ------------------------------------------------------
@dataclass(frozen=True)
class ReleaseLayout:
    """A dataset's training strips in the release: the folders (relative to the dataset folder, as in the original
    tree), an example path for errors, and the name rule giving the original's record (None: needs `--root`)."""

    folders: tuple[str, ...]
    example: str
    rule: NameRule | None


def _prcc_rule(original: PurePosixPath) -> Record | str:
    """`rgb/train/<pid>/<A|B|C>...`: the PRCC loader's pid folder, camera letter and outfit rules."""
    if len(original.parts) != 4:
        return "layout: expected rgb/train/<pid>/<name>"
    folder, stem = original.parts[2], original.parts[3]
    pid = prcc.parse_pid(folder)
    if pid is None:
        return f"name: pid folder {folder!r} is not an integer"
    camera = prcc.parse_name(stem)
    if camera is None:
        return "name: does not start with the camera letter A, B or C"
    key = make_key("train", folder, stem)
    return Record(key, original.as_posix(), pid, prcc.CAMERAS[camera], prcc.clothes_of(pid, camera), "train")


def _flat_rule(parse: Callable[[str], tuple[int, int, str] | None], pattern: str) -> NameRule:
    """`train/<name>` parsed by a flat-folder loader's `parse_name` (keys as `loaders.base.scan_flat` makes them)."""

    def rule(original: PurePosixPath) -> Record | str:
        if len(original.parts) != 2:
            return "layout: expected train/<name>"
        parsed = parse(original.name)
        if parsed is None:
            return f"name: does not match {pattern}"
        pid, camid, clothes_id = parsed
        return Record(make_key("train", original.name), original.as_posix(), pid, camid, clothes_id, "train")

    return rule


_LTCC_NAME = "<pid>_<clothes>_c<cam>_<frame>"
LAYOUTS: dict[str, ReleaseLayout] = {
    "prcc": ReleaseLayout(("rgb/train",), "rgb/train/<pid>/<A|B|C>*.png", _prcc_rule),
    "ltcc": ReleaseLayout(("train",), f"train/{_LTCC_NAME}.png", _flat_rule(ltcc.parse_name, _LTCC_NAME)),
    "demo": ReleaseLayout(("train",), f"train/{_LTCC_NAME}.png", _flat_rule(ltcc.parse_name, _LTCC_NAME)),
    "vcclothes": ReleaseLayout(
        ("train",),
        "train/<pid>-<cam>-<clothes>-<frame>.png",
        _flat_rule(vcclothes.parse_name, "<pid>-<cam>-<clothes>-<frame>"),
    ),
    # LaST numbers cameras by position in the sorted training list, CCVID's tracklets come from its list files:
    # neither reads from a file name alone, so their originals come from the loader under --root.
    "last": ReleaseLayout(("train",), "train/<pid>/<pid>_..._<clothes>.png", None),
    "ccvid": ReleaseLayout(("session1", "session2", "session3"), "session<n>/<pid>_<xx>/<frame>.png", None),
}


def original_path(strip: str) -> str:
    """The original image's path without its extension: `a/X.jpg.png` and `a/X.png` both give `a/X`."""
    base = PurePosixPath(strip[: -len(STRIP_SUFFIX)])
    return (base.with_suffix("") if base.suffix.lower() in IMAGE_EXTENSIONS else base).as_posix()


def find_dataset_folder(names: list[str], layout: ReleaseLayout, accepted: set[str]) -> str | None:
    """The prefix (`""`, `"prcc/"`, `"DLCR/LTCC_ReID/"`, ...) under which the release holds the dataset's training
    strips; among several, the one whose last folder is the dataset's name (`accepted`, lower case)."""
    prefixes = set()
    for name in names:
        if not name.lower().endswith(STRIP_SUFFIX):
            continue
        for folder in layout.folders:
            at = 0 if name.startswith(f"{folder}/") else name.find(f"/{folder}/") + 1
            if at > 0 or name.startswith(f"{folder}/"):
                prefixes.add(name[:at])
    if len(prefixes) > 1:
        named = {p for p in prefixes if PurePosixPath(p).name.lower() in accepted}
        if len(named) == 1:
            return named.pop()
        shown = ", ".join(sorted(p or "./" for p in prefixes))
        raise UserError(f"the release holds several candidate dataset folders ({shown}); pass --release one of them")
    return prefixes.pop() if prefixes else None


# -- one strip ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strip:
    """One strip of the release, checked: its original's record, its size and one text per variant."""

    path: str  # relative to --release
    original: str  # the original's path relative to the dataset folder, without extension
    record: Record  # the original image, as its loader gives it (or as the loader's name rule reads it)
    width: int
    height: int
    lines: tuple[str, ...]  # the .txt lines as written, one per variant

    @property
    def variants(self) -> int:
        return len(self.lines)


def outfit_text(line: str) -> str:
    """`Gray shirt| Blue jeans| Black shoes` -> `Gray shirt | Blue jeans | Black shoes` (the build's form)."""
    return " | ".join(part.strip() for part in line.split("|"))


def text_of(files: ReleaseFiles, names: set[str], strip: str, original: str) -> list[str] | str:
    """The non-empty lines of the strip's `.txt` (`X.jpg.txt` or `X.txt` beside `X.jpg.png`), or the reason."""
    prefix = strip[: strip.rfind("/") + 1]
    candidates = dict.fromkeys([strip[: -len(STRIP_SUFFIX)] + ".txt", prefix + PurePosixPath(original).name + ".txt"])
    found = next((c for c in candidates if c in names), None)
    if found is None:
        return f"txt: no {PurePosixPath(next(iter(candidates))).name} beside the strip"
    try:
        text = files.read(found).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"txt: unreadable ({type(err).__name__})"
    return [line.strip() for line in text.splitlines() if line.strip()]


def image_size(f: IO[bytes]) -> tuple[int, int] | str:
    """(width, height) from the image header, or the reason it cannot be read."""
    try:
        with Image.open(f) as im:
            return im.size
    except Exception as err:  # PIL raises many types for broken files
        return f"unreadable image ({type(err).__name__})"


def variant_count(width: int, height: int, variants: int | None, aspect: float | None, tolerance: float) -> int | str:
    """The number of variants side by side: `variants` as given, else the whole number closest to
    width / (height x aspect), where `aspect` is one variant's width / height; the reason when none fits."""
    if variants is None:
        assert aspect is not None, "the caller supplies --aspect or the original's aspect"
        variants = max(1, round(width / (height * aspect)))
        if abs(width / variants / height - aspect) > tolerance * aspect:
            return (
                f"strip size: {width}x{height} is not a whole number of variants of aspect {aspect:.3f} "
                f"(±{tolerance:.0%}); pass --variants N or --aspect W/H"
            )
    if width % variants:
        return f"strip size: width {width} is not a multiple of {variants} variants"
    return variants


def decode_strip(data: bytes, strip: Strip) -> list[Image.Image] | str:
    """The strip's variants, left to right, as RGB images; the reason when it does not decode as scanned."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = im.convert("RGB")
    except Exception as err:  # truncated or corrupt data behind a readable header
        return f"image: corrupt strip ({type(err).__name__}: {err})".splitlines()[0]
    if rgb.size != (strip.width, strip.height):
        return f"image: strip is {rgb.width}x{rgb.height}, scanned as {strip.width}x{strip.height}"
    w = strip.width // strip.variants
    return [rgb.crop((k * w, 0, (k + 1) * w, strip.height)) for k in range(strip.variants)]


class Originals:
    """The original image each strip was generated from: the loader's record under `--root` (`loaded`), else the
    record the loader's name rule reads from the strip's path."""

    def __init__(self, layout: ReleaseLayout, loaded: Loaded | None) -> None:
        self.layout, self.loaded = layout, loaded
        self._index: dict[str, tuple[Record, str]] = {}  # original path without extension -> (record, image file)
        if loaded is not None:
            for r in loaded.splits.get("train", []):
                for f in r.frames or (r.path,):
                    self._index[str(PurePosixPath(f).with_suffix(""))] = (r, f)

    def find(self, original: str) -> tuple[Record, str | None] | str:
        """(record, the original's file under --root or None without it), or the reason there is none."""
        if self.loaded is None:
            record = self.layout.rule(PurePosixPath(original))
            return record if isinstance(record, str) else (record, None)
        found = self._index.get(original)
        if found is None:
            return f"original: no training image {original}.* under {self.loaded.root}"
        return found

    def aspect(self, image: str) -> float | str:
        """The width / height of an original image under --root, or the reason it cannot be read."""
        try:
            with open(self.loaded.root / image, "rb") as f:
                size = image_size(f)
        except OSError as err:
            return f"unreadable image ({type(err).__name__})"
        return size if isinstance(size, str) else size[0] / size[1]


def scan_strip(
    files: ReleaseFiles,
    names: set[str],
    path: str,
    original: str,
    originals: Originals,
    variants: int | None,
    aspect: float | None,
    tolerance: float,
) -> Strip | Skipped:
    """One strip checked against its name, its `.txt` and its size (only the image header is read)."""
    found = originals.find(original)
    if isinstance(found, str):
        return Skipped(path, found)
    record, image = found
    lines = text_of(files, names, path, original)
    if isinstance(lines, str):
        return Skipped(path, lines)
    with files.open(path) as f:
        size = image_size(f)
    if isinstance(size, str):
        return Skipped(path, f"image: {size}")
    if variants is None and aspect is None:  # the variant's aspect is the original's
        aspect = originals.aspect(image)
        if isinstance(aspect, str):
            return Skipped(path, f"original: {aspect} {image}")
    count = variant_count(*size, variants, aspect, tolerance)
    if isinstance(count, str):
        return Skipped(path, count)
    if len(lines) != count:
        return Skipped(path, f"txt: {len(lines)} lines for {count} variants")
    return Strip(path, original, record, size[0], size[1], tuple(lines))
