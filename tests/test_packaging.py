"""What a user installs: each package's version is written once and has a changelog entry, and
the plugin CI example installs vaebench from where it can be installed today."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGES = [REPOSITORY, *sorted(p.parent for p in REPOSITORY.glob("plugins/*/pyproject.toml"))]


def declared_version(package: Path) -> tuple[str, str]:
    """(distribution name, version) as the package's build reads them: from the package
    module's ``__version__``, the one place a version is written."""
    project = tomllib.loads((package / "pyproject.toml").read_text())
    meta = project["project"]
    assert "version" not in meta, f"{package.name}: write the version once, in __version__"
    assert "version" in meta.get("dynamic", []), package
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    module, name = attr.rsplit(".", 1)
    source = (package / module.replace(".", "/") / "__init__.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return meta["name"], ast.literal_eval(node.value)
    raise AssertionError(f"{attr} is not assigned a literal in {module}")


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_the_version_is_written_once_and_in_the_changelog(package: Path) -> None:
    name, version = declared_version(package)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    changelog = (REPOSITORY / "CHANGELOG.md").read_text()
    assert f"### {name} {version}" in changelog, f"CHANGELOG.md has no section for {name} {version}"


def test_the_vaebench_module_version_is_the_package_version() -> None:
    import vaebench

    assert declared_version(REPOSITORY) == ("vaebench", vaebench.__version__)


def test_the_plugin_ci_example_installs_vaebench_from_its_repository() -> None:
    workflow = (REPOSITORY / "examples" / "plugin-ci.yml").read_text()
    installs = re.findall(r"pip install ([^\n&]*)", workflow)
    # No step may ask PyPI for vaebench, where it is not published.
    assert not [i for i in installs if re.search(r"(^|\s|')vaebench(\[|\s|'|$|=)", i)], installs
    assert 'pip install "vaebench @ git+${VAEBENCH_REPOSITORY}@${VAEBENCH_REF}"' in workflow
    assert "Once vaebench is published on PyPI" in workflow


def test_every_package_requires_the_python_that_lint_and_type_checks_assume() -> None:
    # The code uses 3.11's standard library (typing.NotRequired, tomllib, datetime.UTC): a
    # package that declared an older Python would install there and fail at import.
    core = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    checked = core["tool"]["mypy"]["python_version"]
    assert core["tool"]["ruff"]["target-version"] == "py" + checked.replace(".", "")
    for package in PACKAGES:
        meta = tomllib.loads((package / "pyproject.toml").read_text())["project"]
        assert meta["requires-python"] == f">={checked}", package.name
