"""The plugin machinery: one manager for built-ins and third parties, collisions, did-you-mean,
lazy loading, ``VAEBENCH_PLUGINS`` and errors that name the plugin at fault."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

import vaebench
from vaebench import builtin, plugins
from vaebench.contracts import ComponentSpec
from vaebench.errors import PluginError
from vaebench.hookspecs import hookimpl
from vaebench.plugins import PluginHost

# the core's own components; other built-ins may join them
CORE_COMPONENTS = {
    "encoder": {"mlp-gaussian"},
    "decoder": {"mlp-bernoulli", "mlp-categorical"},
    "prior": {"standard-normal", "mog", "vamp"},
    "suite": {"digits"},
    "metric": {"likelihood"},
    "executor": {"local"},
}


def _factory(ctx: Any) -> None:  # never called: these tests only register
    raise AssertionError("not built in these tests")


def spec(name: str, kind: str = "encoder") -> ComponentSpec:
    return ComponentSpec(name, kind, _factory)  # type: ignore[arg-type]


def plugin_registering(*specs: ComponentSpec, version: str | None = None) -> Any:
    """A module-like plugin object whose hooks register ``specs``, each through its kind's hook."""
    by_hook: dict[str, list[ComponentSpec]] = {}
    for s in specs:
        by_hook.setdefault(f"vaebench_register_{s.kind}s", []).append(s)
    attrs: dict[str, Any] = {}
    for hook_name, items in by_hook.items():

        def impl(register: Callable[[Any], None], _items: list[ComponentSpec] = items) -> None:
            for item in _items:
                register(item)

        impl.__name__ = hook_name
        attrs[hook_name] = hookimpl(impl)
    if version is not None:
        attrs["__version__"] = version
    return types.SimpleNamespace(**attrs)


class FakeDist:
    version = "2.5"
    metadata = {"Name": "vaebench-fake"}


class FakeEntryPoint:
    """Just what :class:`PluginHost` reads from an ``importlib.metadata.EntryPoint``."""

    def __init__(self, name: str, plugin: Any = None, error: Exception | None = None) -> None:
        self.name = name
        self.value = f"fake_{name}.plugin"
        self.group = plugins.ENTRY_POINT_GROUP
        self.dist: Any = None
        self._plugin = plugin
        self._error = error

    def load(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._plugin


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``installed(*entry_points)``: pretend these are the only entry points installed (and
    that ``VAEBENCH_PLUGINS`` is unset, unless a test sets it)."""
    monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)

    def install(*eps: FakeEntryPoint) -> None:
        def entry_points(group: str) -> list[FakeEntryPoint]:
            assert group == plugins.ENTRY_POINT_GROUP
            return list(eps)

        monkeypatch.setattr(plugins, "metadata", types.SimpleNamespace(entry_points=entry_points))

    return install


# -- built-ins go through the same hooks ---------------------------------------------------


def test_builtin_plugin_registers_through_the_hooks(host: PluginHost) -> None:
    [info] = host.plugins()
    assert info.name == plugins.BUILTIN_NAME == "vaebench"
    assert info.version == vaebench.__version__
    assert info.distribution == "vaebench"
    # the built-in module is an ordinary pluggy plugin of the manager, not a second path
    assert host.pm.get_plugin("vaebench") is builtin
    implemented = [name for name in plugins.HOOK_KINDS if hasattr(builtin, name)]
    assert info.hooks == implemented
    for hook_name in implemented:
        [impl] = getattr(host.pm.hook, hook_name).get_hookimpls()
        assert impl.plugin_name == "vaebench"
        assert impl.trylast  # so that a plugin's implementation runs first
    for kind, core in CORE_COMPONENTS.items():
        assert core <= set(info.registered[kind])
    for kind, registry in host.registries.items():
        assert registry.names() == sorted(info.registered.get(kind, []))
        assert {(e.plugin, e.version) for e in registry} <= {("vaebench", vaebench.__version__)}
    assert host.versions() == {"vaebench": vaebench.__version__}


def test_extra_plugin_object_registers_components() -> None:
    toy = plugin_registering(spec("toy-enc"), spec("toy-prior", "prior"), version="1.2")
    host = PluginHost(extra_plugins={"toy": toy}, entry_points=False)
    entry = host.entry("encoder", "toy-enc")
    assert (entry.plugin, entry.version) == ("toy", "1.2")
    assert entry.obj.name == "toy-enc"
    assert host.get("prior", "toy-prior").kind == "prior"
    assert "mlp-gaussian" in host.registry("encoder")  # built-ins still there
    info = {i.name: i for i in host.plugins()}["toy"]
    assert info.distribution is None
    assert info.registered == {"encoder": ["toy-enc"], "prior": ["toy-prior"]}
    assert sorted(info.hooks) == ["vaebench_register_encoders", "vaebench_register_priors"]
    assert host.versions() == {"toy": "1.2", "vaebench": vaebench.__version__}


def test_class_based_plugin_and_a_hook_taking_no_arguments() -> None:
    class Toy:
        calls = 0

        @hookimpl
        def vaebench_register_decoders(self, register: Callable[[Any], None]) -> None:
            register(spec("toy-dec", "decoder"))

        @hookimpl
        def vaebench_register_metrics(self) -> None:
            # implementations may take fewer arguments than the spec, so hooks can grow
            type(self).calls += 1

    host = PluginHost(extra_plugins={"toy": Toy()}, entry_points=False)
    assert host.entry("decoder", "toy-dec").plugin == "toy"
    assert Toy.calls == 1
    assert "vaebench_register_metrics" in {i.name: i for i in host.plugins()}["toy"].hooks


# -- collisions and unknown names ----------------------------------------------------------


def test_a_name_registered_twice_names_both_plugins() -> None:
    host = PluginHost(
        extra_plugins={
            "alpha": plugin_registering(spec("dup")),
            "beta": plugin_registering(spec("dup")),
        },
        entry_points=False,
    )
    with pytest.raises(PluginError) as err:
        host.load()
    message = str(err.value)
    assert "'dup'" in message and "'alpha'" in message and "'beta'" in message


def test_a_plugin_cannot_take_a_builtin_name() -> None:
    host = PluginHost(
        extra_plugins={"mine": plugin_registering(spec("standard-normal", "prior"))},
        entry_points=False,
    )
    with pytest.raises(PluginError, match="standard-normal") as err:
        host.registry("prior")
    assert "'mine'" in str(err.value) and "'vaebench'" in str(err.value)


def test_unknown_name_lists_known_names_closest_first(host: PluginHost) -> None:
    with pytest.raises(PluginError) as err:
        host.get("prior", "standard-normla")
    message = str(err.value)
    assert "'standard-normla'" in message
    listing = message.split("closest first: ")[1]
    assert listing.split(", ")[0] == "standard-normal"
    assert sorted(listing.split(", ")) == ["mog", "standard-normal", "vamp"]


def test_unknown_kind_lists_the_kinds(host: PluginHost) -> None:
    with pytest.raises(PluginError, match="unknown kind 'sampler'.*encoder"):
        host.registry("sampler")


def test_component_registered_through_the_wrong_hook() -> None:
    wrong = types.SimpleNamespace(
        vaebench_register_encoders=hookimpl(lambda register: register(spec("a-decoder", "decoder")))
    )
    host = PluginHost(extra_plugins={"wrong": wrong}, entry_points=False)
    with pytest.raises(PluginError, match="'wrong'.*'a-decoder'.*kind 'decoder'"):
        host.load()


def test_component_without_a_name() -> None:
    nameless = types.SimpleNamespace(
        vaebench_register_priors=hookimpl(lambda register: register(object()))
    )
    host = PluginHost(extra_plugins={"nameless": nameless}, entry_points=False)
    with pytest.raises(PluginError, match="'nameless' registered a prior without a name"):
        host.load()


# -- invalid plugins -----------------------------------------------------------------------


def test_typo_in_a_hook_name_is_caught() -> None:
    typo = types.SimpleNamespace(
        vaebench_register_encoder=hookimpl(lambda register: register(spec("never")))
    )
    host = PluginHost(extra_plugins={"typo": typo}, entry_points=False)
    with pytest.raises(PluginError, match="vaebench_register_encoder"):
        host.load()


def test_hook_with_an_argument_the_spec_does_not_have() -> None:
    bad = types.SimpleNamespace(vaebench_register_priors=hookimpl(lambda registry: None))
    host = PluginHost(extra_plugins={"bad": bad}, entry_points=False)
    with pytest.raises(PluginError, match="plugin 'bad' is invalid"):
        host.load()


def test_hook_that_raises_names_plugin_and_hook() -> None:
    def explode(register: Callable[[Any], None]) -> None:
        raise RuntimeError("kaput")

    broken = types.SimpleNamespace(vaebench_register_priors=hookimpl(explode))
    host = PluginHost(extra_plugins={"broken": broken}, entry_points=False)
    with pytest.raises(PluginError) as err:
        host.load()
    message = str(err.value)
    assert "'broken'" in message and "vaebench_register_priors" in message
    assert "RuntimeError: kaput" in message


def test_one_plugin_object_under_two_names_is_a_plugin_error() -> None:
    # Two entry points pointing at the same module; pluggy itself raises ValueError.
    toy = plugin_registering(spec("toy-enc"))
    host = PluginHost(extra_plugins={"toy": toy, "toy-again": toy}, entry_points=False)
    with pytest.raises(PluginError, match="toy-again"):
        host.load()


def test_a_failed_load_keeps_failing_instead_of_serving_a_partial_registry() -> None:
    # BUG (vaebench/plugins.py, PluginHost.load): ``_loaded`` is set before loading, so after
    # a plugin error the next access returns the registries as far as they were filled
    # (here: no priors, no suites at all) without any error.
    def explode(register: Callable[[Any], None]) -> None:
        raise RuntimeError("kaput")

    broken = types.SimpleNamespace(vaebench_register_priors=hookimpl(explode))
    host = PluginHost(extra_plugins={"broken": broken}, entry_points=False)
    with pytest.raises(PluginError):
        host.load()
    with pytest.raises(PluginError, match="'broken'"):
        host.registry("prior")


# -- laziness ------------------------------------------------------------------------------


def test_importing_the_plugin_machinery_loads_no_plugin_and_no_torch() -> None:
    code = (
        "import sys, vaebench.plugins;"
        "bad = [m for m in ('vaebench.builtin', 'torch') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_host_loads_nothing_until_first_access_and_then_once() -> None:
    calls: list[int] = []

    def count(register: Callable[[Any], None]) -> None:
        calls.append(1)
        register(spec("counted"))

    host = PluginHost(
        extra_plugins={
            "counter": types.SimpleNamespace(vaebench_register_encoders=hookimpl(count))
        },
        entry_points=False,
    )
    assert not host._loaded
    assert host.pm.get_plugins() == set()
    assert all(len(r) == 0 for r in host.registries.values()) and host.info == {}
    assert "counted" in host.registry("encoder")
    assert host._loaded and host.pm.get_plugin("counter") is not None
    host.get("encoder", "counted")
    host.plugins()
    host.load()
    assert calls == [1]


def test_default_host_is_cached_and_reset(fresh_default_host: None) -> None:
    first = plugins.default_host()
    assert first._loaded
    assert plugins.default_host() is first
    plugins.reset_default_host()
    assert plugins.default_host() is not first


# -- entry points and VAEBENCH_PLUGINS -----------------------------------------------------


@pytest.mark.parametrize(
    ("env", "loaded"),
    [(None, True), ("fake", True), (" fake , ", True), ("none", False), ("", False)],
)
def test_vaebench_plugins_selects_entry_points(
    env: str | None,
    loaded: bool,
    installed: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    fresh_default_host: None,
) -> None:
    installed(FakeEntryPoint("fake", plugin_registering(spec("fake-prior", "prior"))))
    if env is None:
        monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)
    else:
        monkeypatch.setenv(plugins.ENV_PLUGINS, env)
    host = plugins.default_host()
    assert ("fake-prior" in host.registry("prior")) is loaded
    assert ("fake" in host.versions()) is loaded
    assert "standard-normal" in host.registry("prior")  # built-ins always load


def test_entry_point_plugin_reports_its_distribution(installed: Callable[..., None]) -> None:
    ep = FakeEntryPoint("fake", plugin_registering(spec("fake-enc")))
    ep.dist = FakeDist()
    installed(ep)
    host = PluginHost()
    info = {i.name: i for i in host.plugins()}["fake"]
    assert (info.version, info.distribution) == ("2.5", "vaebench-fake")
    assert host.entry("encoder", "fake-enc").version == "2.5"


def test_vaebench_plugins_naming_a_plugin_that_is_not_installed(
    installed: Callable[..., None], monkeypatch: pytest.MonkeyPatch, fresh_default_host: None
) -> None:
    installed(FakeEntryPoint("fake", plugin_registering(spec("fake-enc"))))
    monkeypatch.setenv(plugins.ENV_PLUGINS, "fake,nonexistent")
    with pytest.raises(PluginError, match="nonexistent.*installed: fake"):
        plugins.default_host()


def test_no_entry_points_loaded_when_disabled_even_if_installed(
    installed: Callable[..., None],
) -> None:
    installed(FakeEntryPoint("broken", error=ImportError("would fail if loaded")))
    assert [info.name for info in PluginHost(entry_points=False).plugins()] == ["vaebench"]


def test_plugin_that_fails_to_import_names_itself(
    installed: Callable[..., None],
) -> None:
    installed(FakeEntryPoint("broken", error=ImportError("No module named 'torchvisionx'")))
    with pytest.raises(PluginError) as err:
        PluginHost().load()
    message = str(err.value)
    assert "'broken'" in message and "fake_broken.plugin" in message
    assert "ImportError" in message and "torchvisionx" in message


def test_failing_entry_point_via_selected_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same through the selection function itself, as the brief's fake entry point
    ep = types.SimpleNamespace(
        name="halfbaked", value="halfbaked:plugin", dist=None, load=lambda: 1 / 0
    )
    monkeypatch.setattr(plugins, "_selected_entry_points", lambda env: [ep])
    with pytest.raises(PluginError, match="'halfbaked'.*ZeroDivisionError"):
        PluginHost().load()


def test_two_entry_points_with_one_name(installed: Callable[..., None]) -> None:
    installed(
        FakeEntryPoint("same", plugin_registering(spec("a"))),
        FakeEntryPoint("same", plugin_registering(spec("b"))),
    )
    with pytest.raises(PluginError, match="both named 'same'"):
        PluginHost().load()
