"""Hash-keyed caches: a result is stored under a digest of everything it depends on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def digest(key: Any, length: int = 12) -> str:
    """Short SHA-256 of ``key`` (a JSON-serialisable value; dicts are sorted)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:length]


def cached_file(cache_dir: Path, stem: str, key: Any, write: Callable[[Path], Any],
                suffix: str = ".h5") -> Path:
    """``cache_dir/STEM_DIGEST.SUFFIX``, written by ``write(path)`` unless it exists already.

    ``key`` must hold everything the content depends on (configuration, seed, sizes, the
    trigkit version); ``write`` must write atomically, so an interrupted run leaves no entry.
    """
    path = Path(cache_dir) / f"{stem}_{digest(key)}{suffix}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    return path
