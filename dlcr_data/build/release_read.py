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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from PIL import Image

from dlcr_data import loaders
from dlcr_data.errors import UserError
from dlcr_data.loaders import Loaded, ReleaseLayout, SourceDataset
from dlcr_data.loaders.base import IMAGE_EXTENSIONS
from dlcr_data.records import Record, Skipped

STRIP_SUFFIX = ".png"
# `DLCR.z01`, `DLCR.z02`, ... (zip's own split format) and `DLCR.zip.001`, ... (7-Zip / `split` parts)
_SPLIT_PART = re.compile(r"^(?P<base>.+)\.(?:z\d{2,}|zip\.\d{3,})$", re.IGNORECASE)


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
        """A member for reading; one that cannot be opened raises OSError, as in `read`."""
        try:
            return self._zip.open(name) if self._zip is not None else open(self.path / name, "rb")
        except self._read_errors() as err:
            raise OSError(f"{name}: {type(err).__name__}: {err}") from err

    def read(self, name: str) -> bytes:
        """A member's bytes. However it fails to read (a bad CRC or header: BadZipFile; corrupt or cut compressed
        data: zlib.error, EOFError; an unknown compression: NotImplementedError), it raises OSError, the one error
        every caller turns into a skip reason, with the failure as its cause (`err.__cause__`)."""
        with self.open(name) as f:
            try:
                return f.read()
            except self._read_errors() as err:
                raise OSError(f"{name}: {type(err).__name__}: {err}") from err

    @staticmethod
    def _read_errors() -> tuple[type[Exception], ...]:
        import zlib

        return (OSError, zipfile.BadZipFile, EOFError, NotImplementedError, zlib.error)

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
def release_layout(dataset: str) -> ReleaseLayout:
    """Where the release holds the dataset's training strips (its loader's `release_layout`), or the one-line
    error for a dataset it holds none of."""
    spec = loaders.get(dataset)
    if spec.release_layout is None:
        held = ", ".join(name for name, cls in loaders.DATASETS.items() if cls.release_layout is not None)
        raise UserError(f"{spec.name}: DLCR's release holds none of its images; import-release reads {held}")
    return spec.release_layout


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
    record: Record  # the original image, as its loader gives it (or as its `record_of` reads the path)
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
    record the loader's rule (`spec.record_of`) reads from the strip's path."""

    def __init__(self, spec: SourceDataset, loaded: Loaded | None) -> None:
        self.spec, self.loaded = spec, loaded
        self._index: dict[str, tuple[Record, str]] = {}  # original path without extension -> (record, image file)
        if loaded is not None:
            for r in loaded.splits.get("train", []):
                for f in r.frames or (r.path,):
                    self._index[str(PurePosixPath(f).with_suffix(""))] = (r, f)

    def find(self, original: str) -> tuple[Record, str | None] | str:
        """(record, the original's file under --root or None without it), or the reason there is none."""
        if self.loaded is None:
            # the original's extension is unknown: the strip's stands in (keys and labels come from the stem)
            record = self.spec.record_of(original + STRIP_SUFFIX)
            return (record, None) if isinstance(record, Record) else _name_reason(record.reason)
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


def _name_reason(reason: str) -> str:
    """A loader's skip reason under the release's heading: `layout: ...` as is, the name rule's under `name:`
    (`name does not match X` -> `name: does not match X`)."""
    return reason if reason.startswith("layout:") else f"name: {reason.removeprefix('name ')}"


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
    try:
        with files.open(path) as f:
            size = image_size(f)
    except OSError as err:  # a zip member that cannot be opened (bad header, unsupported compression)
        return Skipped(path, f"image: unreadable strip ({type(err.__cause__ or err).__name__})")
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
