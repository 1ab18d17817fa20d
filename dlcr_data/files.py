"""Files: where datasets live by default, and atomic writes (a reader never sees a half-written file: temp name
in the same folder, then rename)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

DATA_ROOT_ENV = "DLCR_DATA_ROOT"


def default_data_root() -> Path:
    """Folder holding the dataset folders when no `--root` is given: `$DLCR_DATA_ROOT` or ~/.cache/dlcr-data."""
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dlcr-data" / "datasets"


def temp_name(path: Path) -> Path:
    """A temp name beside `path`, unique per process, that never matches the final name's glob."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """A temp file beside `path`, renamed onto it when the block ends without an error, deleted otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """Lines (each ending in a newline) streamed to the file: no joined copy held in memory."""
    with atomic_file(path, "w") as f:
        f.writelines(lines)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def remove_stale_temps(folder: Path, pid: int | str = "*") -> int:
    """Delete temp files (`.<name>.tmp-<pid>`) under `folder`, of one process or all; returns how many."""
    stale = list(Path(folder).rglob(f".*.tmp-{pid}")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def save_png_atomic(image, path: Path) -> Path:
    """A PIL image as PNG, atomically; returns the path."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes_atomic(Path(path), buf.getvalue())
    return Path(path)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
