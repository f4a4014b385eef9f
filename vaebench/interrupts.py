"""Stopping a run on SIGINT or SIGTERM without losing the training under way.

A run in this process (the ``local`` executor) takes both signals through
:func:`stop_on_signals`. Outside a training loop a signal stops the run at once, as Ctrl-C
always did, but by an :class:`Interrupted` that unwinds cleanly (locks released, progress bars
closed), SIGTERM included. Inside a training loop that can write a checkpoint
(:func:`deferred`), the first signal only asks for a stop: the loop finishes its step, saves a
checkpoint of that step and raises :class:`Interrupted`, so that the same command resumes from
there, not from the last periodic checkpoint. A second signal stops at once.

Workers of the other executors keep the default handling: their parent owns the signals.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by ``signum``; ``checkpoint_step`` is the step a checkpoint was saved
    at on the way out (None where none was)."""

    def __init__(self, signum: int, checkpoint_step: int | None = None) -> None:
        self.signum = signum
        self.checkpoint_step = checkpoint_step
        super().__init__(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class _Requests:
    """What the handler knows: whether it is installed, whether a training loop defers the
    stop, and the signal that asked for one."""

    def __init__(self) -> None:
        self.installed = False
        self.deferring = False
        self.signum: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.deferring and self.signum is None:
            self.signum = signum
            print(
                f"\nvaebench: {signal.Signals(signum).name}: stopping after this step, with a "
                "checkpoint of it (send it again to stop at once)",
                file=sys.stderr,
            )
            return
        raise Interrupted(signum)


_REQUESTS = _Requests()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM stop the run by :class:`Interrupted` (a training loop
    first saves a checkpoint). Only the main thread can take signals; elsewhere, or nested,
    this does nothing; a signal ignored on the way in stays ignored. The former handlers come back
    on the way out."""
    if threading.current_thread() is not threading.main_thread() or _REQUESTS.installed:
        yield
        return
    # A signal ignored on the way in stays ignored (a background job of a shell ignores SIGINT).
    previous = {s: h for s in SIGNALS if (h := signal.getsignal(s)) is not signal.SIG_IGN}
    _REQUESTS.installed, _REQUESTS.signum = True, None
    try:
        for s in previous:
            signal.signal(s, _REQUESTS.handle)
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _REQUESTS.installed, _REQUESTS.deferring, _REQUESTS.signum = False, False, None


@contextlib.contextmanager
def deferred(enabled: bool = True) -> Iterator[None]:
    """A training loop that can save a checkpoint runs inside: a signal then only asks for a
    stop (:func:`requested`), which the loop carries out at the end of its step."""
    if not enabled or not _REQUESTS.installed:
        yield
        return
    _REQUESTS.deferring = True
    try:
        yield
    finally:
        _REQUESTS.deferring = False


def requested() -> int | None:
    """The signal that asked for a stop, if one did."""
    return _REQUESTS.signum
