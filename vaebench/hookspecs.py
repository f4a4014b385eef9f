"""The hooks a vaebench plugin implements.

A plugin is a module (or object) with functions marked ``@vaebench.hookimpl``, made known to
vaebench through the ``vaebench`` entry-point group::

    [project.entry-points.vaebench]
    my_plugin = "my_package.plugin"

Every hook hands the plugin a ``register`` callback; the plugin calls it once per component it
provides. vaebench's own components are registered through these same hooks. An implementation
may accept fewer arguments than the spec names, so hooks can grow without breaking plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "vaebench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[Any], None]


@hookspec
def vaebench_register_encoders(register: Register) -> None:
    """Register encoders q(z|x).

    :param register: call with a :class:`vaebench.contracts.ComponentSpec` of kind
        ``"encoder"`` whose factory returns a module mapping x to a distribution over z.
    """


@hookspec
def vaebench_register_decoders(register: Register) -> None:
    """Register decoders p(x|z).

    :param register: call with a :class:`vaebench.contracts.ComponentSpec` of kind
        ``"decoder"`` whose factory returns a module mapping z to a distribution over x.
    """


@hookspec
def vaebench_register_priors(register: Register) -> None:
    """Register priors p(z).

    :param register: call with a :class:`vaebench.contracts.ComponentSpec` of kind ``"prior"``
        whose factory returns a module with ``log_prob(z)`` and ``sample(n)``.
    """


@hookspec
def vaebench_register_datasets(register: Register) -> None:
    """Register datasets.

    :param register: call with a :class:`vaebench.contracts.DatasetSpec`.
    """


@hookspec
def vaebench_register_suites(register: Register) -> None:
    """Register benchmark suites.

    :param register: call with a :class:`vaebench.contracts.Suite`.
    """


@hookspec
def vaebench_register_metrics(register: Register) -> None:
    """Register evaluation metrics.

    :param register: call with a :class:`vaebench.contracts.MetricSpec`.
    """


@hookspec
def vaebench_register_executors(register: Register) -> None:
    """Register executors, which run units of work (a combination and its seeds).

    :param register: call with a :class:`vaebench.contracts.ExecutorSpec`.
    """


@hookspec
def vaebench_register_objectives(register: Register) -> None:
    """Register training objectives (the fourth part of a combination, beside encoder, decoder
    and prior): ELBO, importance-weighted bounds, weighted KL terms...

    :param register: call with a :class:`vaebench.contracts.ObjectiveSpec` whose factory turns
        options into an object with ``samples`` and ``loss(terms, progress)``.
    """
