"""Where data sources keep what they computed once, and how a cache entry is keyed by the files it came from."""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Iterable


def cache_root() -> pathlib.Path:
    """``$PLUGATTN_CACHE``, or ``~/.cache/plugattn``."""
    return pathlib.Path(os.environ.get("PLUGATTN_CACHE", pathlib.Path.home() / ".cache" / "plugattn"))


def files_fingerprint(folders: Iterable[pathlib.Path], base: pathlib.Path, salt: str = "") -> str:
    """16 hex digits that change when ``salt`` or any file below ``folders`` (name relative to ``base``, size,
    modification time) changes."""
    stamp = hashlib.sha256(salt.encode())
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stat = path.stat()
                stamp.update(f"{path.relative_to(base)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return stamp.hexdigest()[:16]
