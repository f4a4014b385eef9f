"""Every ``vaebench`` command line shown in the READMEs (the project's, the benchmarks', the
results directory's and the plugin packages') parses with the real CLI parser, so the
documentation cannot drift from the options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vaebench.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


READMES = [
    ROOT / "README.md",
    ROOT / "benchmarks" / "README.md",
    ROOT / "results" / "README.md",
    *sorted((ROOT / "plugins").glob("*/README.md")),
]


def readme_commands() -> list[str]:
    commands = []
    for path in READMES:
        text = path.read_text().replace("\\\n", " ")  # shell line continuations
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("vaebench "):
                continue
            line = line.split("#", 1)[0].strip()
            line = re.sub(r"\[([^\]]+)\]", r"\1", line)  # "[--json]": an optional flag, given
            commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]
