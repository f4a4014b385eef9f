"""The table output formats, in one list: every command's ``--format`` choices come from here.

No torch and no pandas: the command-line parsers import this to build ``--help``.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = ("md", "latex", "csv", "json", "html")
# Formats a program reads rather than a person: one document, no prose between tables.
MACHINE_FORMATS = ("csv", "json")
SUFFIX_FORMATS = {".md": "md", ".tex": "latex", ".csv": "csv", ".json": "json", ".html": "html"}


def format_for(output: str | None, given: str | None, default: str) -> str:
    """The format asked for, else the one an output file's suffix implies, else ``default``."""
    if given:
        return given
    if output:
        return SUFFIX_FORMATS.get(Path(output).suffix.lower(), default)
    return default
