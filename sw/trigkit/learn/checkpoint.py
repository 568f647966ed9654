"""Checkpoint files: written atomically, read with torch's weights-only unpickler.

A checkpoint holds tensors and plain data (dicts, lists, numbers, strings) only. Checkpoints are
shared between people and machines, so loading one must never run code: anything else in the
file (a pickled object whose unpickling would call a function) is refused before it is built.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from trigkit.core.errors import TrigkitError
from trigkit.core.io import atomic_path


def save_checkpoint(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file renamed onto ``path`` (no partial checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_checkpoint(path: Path) -> Any:
    """A checkpoint's content, unpickled with torch's weights-only loader: tensors and plain
    data only, so a crafted file cannot run code; anything else is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise TrigkitError(
            f"checkpoint {path} holds objects other than tensors and plain data; refused "
            "(loading it could run code). Delete it or train with --fresh "
            f"({str(err).splitlines()[0][:200]})") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise TrigkitError(f"checkpoint {path} is not readable ({err}); delete it or train "
                           "with --fresh") from None
