"""Exceptions vaebench raises for bad input.

Every error a user can cause derives from :class:`VaebenchError`; the CLI prints its message
on one line and exits non-zero instead of showing a traceback. Messages name the bad input and
say how to fix it.
"""

from __future__ import annotations


class VaebenchError(Exception):
    """Base class of every error caused by input (configuration, data, plugins)."""


class ConfigError(VaebenchError):
    """A bad option, budget, grid or path."""


class PluginError(VaebenchError):
    """A plugin could not be loaded, or registered a name twice, or a name is unknown."""


class ContractError(VaebenchError):
    """A component returned something that breaks its contract (wrong shape, invalid value)."""


class DataError(VaebenchError):
    """A data file is missing, corrupt or could not be downloaded."""


class TrainingError(VaebenchError):
    """Training diverged (a non-finite loss) or could not proceed."""
