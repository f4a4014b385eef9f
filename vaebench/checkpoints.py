"""Reading training checkpoints without letting a bad file block its unit forever.

A checkpoint cut short (a full disk, a copy interrupted, a file damaged later) or one that is
not a checkpoint at all would fail its unit at every rerun if loading raised. Instead it is
renamed aside, kept for inspection, with one warning naming both paths, and the unit trains
from scratch.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read and was set aside; its unit starts from scratch."""


def read_checkpoint(
    path: str | os.PathLike[str] | None,
    kind: str,
    required: Iterable[str] = (),
) -> dict[str, Any] | None:
    """The payload saved at ``path`` if it holds a checkpoint of this ``kind`` (``"single"``,
    ``"batched"``...), else None. Its tensors are on the CPU, whatever device wrote it: the
    caller puts each where it belongs (a generator's state must stay a CPU tensor; loading it
    onto a GPU would make ``Generator.set_state`` refuse it).

    None when there is no file, or a readable checkpoint of another kind (it is left alone).
    A file that cannot be read as a checkpoint (truncated, not a torch file, refused by
    ``weights_only`` loading, not a dict with a ``kind``, missing a key of ``required``) is
    renamed to ``<name>.corrupt-<time>`` beside it with a :class:`CheckpointWarning`, and
    None is returned. Loads with ``weights_only=True``: a checkpoint never runs code.
    """
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as e:  # fmt: skip
        _set_aside(path, f"it cannot be loaded ({type(e).__name__}: {_first_line(e)})")
        return None
    if not isinstance(state, dict) or not isinstance(state.get("kind"), str):
        _set_aside(path, f"it holds a {type(state).__name__}, not a checkpoint payload")
        return None
    if state["kind"] != kind:
        return None
    missing = [key for key in required if key not in state]
    if missing:
        _set_aside(path, f"its {kind} payload lacks {', '.join(missing)}")
        return None
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no message"


def _set_aside(path: Path, reason: str) -> None:
    """Rename ``path`` out of the way (never over an earlier one) and warn once, in one line."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        os.replace(path, aside)
        where = f"moved to {aside}"
    except OSError as e:
        # Could not move it: still train from scratch; the next checkpoint overwrites it.
        where = f"left in place ({e.strerror or e})"
    message = f"Checkpoint {path} is unusable: {reason}; {where}; training from scratch."
    log.warning(message)
    warnings.warn(message, CheckpointWarning, stacklevel=3)
    return None
