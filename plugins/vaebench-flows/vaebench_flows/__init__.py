"""vaebench-flows: flow posteriors (Householder, IAF, Sylvester) and a RealNVP prior.

Registered through the ``vaebench`` entry point (:mod:`vaebench_flows.plugin`); nothing here
imports torch until a component is built.
"""

from __future__ import annotations

__version__ = "0.1.0"
