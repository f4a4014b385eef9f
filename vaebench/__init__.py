"""vaebench: a plugin-based benchmark harness for Variational Auto-Encoders.

Importing the package is cheap: it imports neither torch nor any plugin. The Python API lives in
:mod:`vaebench.api` (``from vaebench.api import run``).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
