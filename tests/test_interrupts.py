"""SIGINT and SIGTERM stop a run cleanly; a training under way first saves a checkpoint of its
step, and the same command resumes from it with an uninterrupted run's numbers."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.test_resume import _env, _records, _run_cmd
from vaebench import cli, interrupts


@pytest.fixture
def default_handlers() -> Iterator[None]:
    """Python's own handlers, whatever the test process was started with."""
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(2)  # the handler runs in the main thread; its exception ends the sleep


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_outside_a_training_a_signal_stops_at_once(default_handlers: None, signum: int) -> None:
    with interrupts.stop_on_signals():
        started = time.monotonic()
        with pytest.raises(interrupts.Interrupted) as caught:
            _signal_self(signum)
        assert time.monotonic() - started < 1.5
    assert caught.value.signum == signum and caught.value.checkpoint_step is None
    assert isinstance(caught.value, KeyboardInterrupt)


def test_inside_a_training_the_first_signal_asks_and_the_second_stops(
    default_handlers: None,
) -> None:
    with interrupts.stop_on_signals(), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        assert interrupts.requested() == signal.SIGTERM
        with pytest.raises(interrupts.Interrupted) as caught:
            _signal_self(signal.SIGINT)
    assert caught.value.signum == signal.SIGINT
    assert interrupts.requested() is None, "the request ends with the run"


def test_handlers_come_back_and_an_ignored_signal_stays_ignored(default_handlers: None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts.stop_on_signals():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_off_the_main_thread_nothing_is_installed(default_handlers: None) -> None:
    seen: list[object] = []

    def body() -> None:
        with interrupts.stop_on_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.SIG_DFL]


def test_a_deferred_stop_without_handlers_is_never_requested() -> None:
    with interrupts.deferred():
        assert interrupts.requested() is None


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_of_the_step_and_the_run_resumes_from_it(
    tmp_path: Path,
) -> None:
    """A checkpoint every 50 steps; SIGTERM once the first is written. The run saves the step
    it was at, exits with 143, and the same command ends with an uninterrupted run's numbers."""
    args = (
        *("--priors", "standard-normal", "--seeds", "0", "--steps", "3000"),
        *("--eval-every", "20", "--checkpoint-every", "50", "--patience", "100000"),
    )
    straight = tmp_path / "straight"
    subprocess.run(_run_cmd(straight, *args), env=_env(), check=True, capture_output=True)

    stopped = tmp_path / "stopped"
    checkpoints = stopped / "checkpoints"
    proc = subprocess.Popen(
        _run_cmd(stopped, *args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("*.pt")):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    message = err.decode()
    assert proc.returncode == 128 + signal.SIGTERM, message
    assert "interrupted (SIGTERM); training saved a checkpoint at step" in message
    (path,) = checkpoints.glob("*.pt")
    step = torch.load(path, map_location="cpu", weights_only=True)["step"]
    assert f"at step {step:,}" in message
    assert 50 <= step < 3000
    assert not any((stopped / "records").glob("*.json"))

    subprocess.run(_run_cmd(stopped, *args), env=_env(), check=True, capture_output=True)
    (a,), (b,) = _records(straight), _records(stopped)
    assert b["training"]["resumed_from"] == step
    assert a["key"] == b["key"]
    assert a["metrics"] == b["metrics"]
    assert a["training"]["best_step"] == b["training"]["best_step"]
    assert a["training"]["curve"] == [
        {**point, "seconds": p["seconds"]}
        for point, p in zip(b["training"]["curve"], a["training"]["curve"], strict=True)
    ]


@pytest.mark.parametrize(
    ("raised", "status", "said"),
    [
        (
            interrupts.Interrupted(signal.SIGTERM, 1234),
            143,
            "(SIGTERM); training saved a checkpoint at step 1,234; finished results are kept",
        ),
        (interrupts.Interrupted(signal.SIGTERM), 143, "(SIGTERM); finished results are kept"),
        (KeyboardInterrupt(), 130, "(SIGINT); finished results are kept"),
    ],
)
def test_the_cli_reports_a_stop_by_signal_with_its_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: KeyboardInterrupt,
    status: int,
    said: str,
) -> None:
    def command(_: argparse.Namespace) -> int:
        raise raised

    monkeypatch.setattr(
        argparse.ArgumentParser,
        "parse_args",
        lambda self, argv=None: argparse.Namespace(func=command),
    )
    assert cli.main([]) == status
    err = capsys.readouterr().err
    assert f"vaebench: interrupted {said}, run the same command again to resume" in err
