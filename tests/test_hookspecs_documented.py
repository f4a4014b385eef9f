"""Every hook a plugin can implement is documented: in its docstring (each parameter with a
``:param:`` line), in the registry wiring, and in the README's plugin section."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from vaebench import hookspecs, plugins

README = Path(__file__).resolve().parents[1] / "README.md"
HOOKS = sorted(
    name
    for name, obj in vars(hookspecs).items()
    if inspect.isfunction(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec")
)


def test_hookspecs_are_found() -> None:
    assert "vaebench_register_encoders" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_docstring_documents_every_parameter(hook: str) -> None:
    function = getattr(hookspecs, hook)
    doc = inspect.getdoc(function) or ""
    assert hook.startswith(f"{hookspecs.PROJECT}_"), f"{hook} lacks the vaebench_ prefix"
    assert doc.strip(), f"hookspec {hook} has no docstring"
    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}:" in doc, f"hookspec {hook} does not document {parameter!r}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_feeds_a_registry(hook: str) -> None:
    assert hook in plugins.HOOK_KINDS, f"{hook} is collected into no registry (plugins.HOOK_KINDS)"


def test_no_registry_without_a_hookspec() -> None:
    assert set(plugins.HOOK_KINDS) == set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_readme_documents_the_hook(hook: str) -> None:
    assert README.is_file(), f"{README} is missing"
    assert f"`{hook}`" in README.read_text(encoding="utf-8"), (
        f"README.md does not document the hook `{hook}` (see 'Writing a plugin')"
    )
