"""The plugin machinery: one pluggy manager, lazy entry-point loading, typed registries.

vaebench's own components live in :mod:`vaebench.builtin` and are registered through the same
manager and the same hooks as a third party's. Entry points in the ``vaebench`` group load on
first use, once. ``VAEBENCH_PLUGINS`` limits which entry points load: unset loads all; an empty
string or ``none`` loads none (built-ins only); ``a,b`` loads only those entry-point names.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

import pluggy

from vaebench import hookspecs
from vaebench.errors import PluginError

ENTRY_POINT_GROUP = "vaebench"
ENV_PLUGINS = "VAEBENCH_PLUGINS"
BUILTIN_NAME = "vaebench"

T = TypeVar("T")

# hook name -> registry kind
HOOK_KINDS: dict[str, str] = {
    "vaebench_register_encoders": "encoder",
    "vaebench_register_decoders": "decoder",
    "vaebench_register_priors": "prior",
    "vaebench_register_datasets": "dataset",
    "vaebench_register_suites": "suite",
    "vaebench_register_metrics": "metric",
    "vaebench_register_executors": "executor",
    "vaebench_register_objectives": "objective",
}
KINDS: tuple[str, ...] = tuple(HOOK_KINDS.values())


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and the plugin that registered it."""

    obj: T
    plugin: str
    version: str


class Registry(Generic[T]):
    """Name -> object for one kind of component, with collision and did-you-mean errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, obj: T, plugin: str, version: str) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind} without a name: {obj!r}")
        expected_kind = getattr(obj, "kind", self.kind)
        if expected_kind != self.kind:
            raise PluginError(
                f"plugin {plugin!r} registered {name!r} of kind {expected_kind!r} "
                f"through the {self.kind} hook"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin "
                f"{plugin!r}; uninstall one of them or block it with {ENV_PLUGINS}"
            )
        self._entries[name] = Entry(obj, plugin, version)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=len(names), cutoff=0.0)
        listing = ", ".join(close) if close else "(none registered)"
        return f"unknown {self.kind} {name!r}; known {self.kind}s, closest first: {listing}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str | None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)


def _selected_entry_points(env_value: str | None) -> list[metadata.EntryPoint]:
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    if env_value is None:
        return eps
    wanted = {part.strip() for part in env_value.split(",") if part.strip()}
    if wanted <= {"none"}:
        return []
    available = {ep.name for ep in eps}
    missing = wanted - available
    if missing:
        raise PluginError(
            f"{ENV_PLUGINS} names plugins that are not installed: {', '.join(sorted(missing))}; "
            f"installed: {', '.join(sorted(available)) or '(none)'}"
        )
    return [ep for ep in eps if ep.name in wanted]


class PluginHost:
    """Loads plugins and holds one :class:`Registry` per kind.

    Nothing is loaded until :meth:`load` (called by every accessor). Tests build their own host,
    optionally with extra plugin objects and without entry points.
    """

    def __init__(
        self, extra_plugins: dict[str, Any] | None = None, entry_points: bool = True
    ) -> None:
        self._extra = dict(extra_plugins or {})
        self._entry_points = entry_points
        self._loaded = False
        self._failure: PluginError | None = None
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry[Any]] = {kind: Registry(kind) for kind in KINDS}
        self.info: dict[str, PluginInfo] = {}

    # -- loading -------------------------------------------------------------------------
    def load(self) -> PluginHost:
        """Load built-ins and entry points once. A failed load keeps failing: a half-filled
        registry is never served."""
        if self._failure is not None:
            raise self._failure
        if self._loaded:
            return self
        self._loaded = True
        try:
            self._load_all()
        except PluginError as exc:
            self._failure = exc
            raise
        return self

    def _load_all(self) -> None:
        from vaebench import __version__, builtin

        self._register(BUILTIN_NAME, builtin, __version__, "vaebench")
        for name, plugin in self._extra.items():
            self._register(name, plugin, getattr(plugin, "__version__", "0"), None)
        if self._entry_points:
            for ep in _selected_entry_points(os.environ.get(ENV_PLUGINS)):
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken plugin must name itself
                    raise PluginError(
                        f"plugin {ep.name!r} ({ep.value}) failed to import: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                dist = ep.dist
                version = dist.version if dist is not None else "0"
                dist_name = dist.metadata["Name"] if dist is not None else None
                self._register(ep.name, plugin, version, dist_name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            raise PluginError(
                f"plugin {name!r} implements a hook vaebench does not define: {exc} "
                "(check the hook name's spelling against vaebench.hookspecs)"
            ) from exc
        self._collect()

    def _register(self, name: str, plugin: Any, version: str, dist: str | None) -> None:
        if self.pm.has_plugin(name):
            raise PluginError(f"two plugins are both named {name!r}; rename one entry point")
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:  # ValueError: object twice
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
        self.info[name] = PluginInfo(name=name, version=str(version), distribution=dist)

    def _collect(self) -> None:
        # Call each implementation on its own so every object is attributed to its plugin.
        for hook_name, kind in HOOK_KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in reversed(caller.get_hookimpls()):
                plugin_name = impl.plugin_name
                info = self.info[plugin_name]
                info.hooks.append(hook_name)
                registry = self.registries[kind]

                def register(obj: Any, _p: str = plugin_name, _r: Registry[Any] = registry) -> None:
                    _r.add(obj, _p, self.info[_p].version)
                    self.info[_p].registered.setdefault(_r.kind, []).append(obj.name)

                kwargs = {"register": register} if "register" in impl.argnames else {}
                try:
                    impl.function(**kwargs)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                    ) from exc

    # -- access --------------------------------------------------------------------------
    def registry(self, kind: str) -> Registry[Any]:
        self.load()
        if kind not in self.registries:
            raise PluginError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        return self.registries[kind]

    def get(self, kind: str, name: str) -> Any:
        return self.registry(kind).get(name)

    def entry(self, kind: str, name: str) -> Entry[Any]:
        return self.registry(kind).entry(name)

    def plugins(self) -> list[PluginInfo]:
        self.load()
        return [self.info[name] for name in sorted(self.info)]

    def versions(self) -> dict[str, str]:
        self.load()
        return {name: info.version for name, info in sorted(self.info.items())}


_default: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide host, created and loaded on first use."""
    global _default
    if _default is None:
        _default = PluginHost()
    return _default.load()


@contextlib.contextmanager
def use_host(host: PluginHost) -> Iterator[PluginHost]:
    """Within the block, :func:`default_host` is ``host`` (tests, and the Python API with a
    host of its own); the previous one is back afterwards."""
    global _default
    saved = _default
    _default = host
    try:
        yield host
    finally:
        _default = saved


def dataset_loader(host: PluginHost | None = None) -> Callable[..., Any]:
    """``load(name, **options)``: a registered dataset of ``host`` (default: the process-wide
    one), what a suite's loader receives to read its datasets."""

    def load(name: str, **options: Any) -> Any:
        return (host or default_host()).get("dataset", name).load(**options)

    return load


def reset_default_host() -> None:
    """Forget the process-wide host (tests; after changing ``VAEBENCH_PLUGINS``)."""
    global _default
    _default = None
