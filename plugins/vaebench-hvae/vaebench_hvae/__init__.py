"""vaebench-hvae: two-stochastic-layer VAEs (Burda et al. 2015; Tomczak & Welling 2018) through
vaebench's encoder, decoder and prior contracts, with z = (z1, z2) concatenated.

Registered through the ``vaebench`` entry point (:mod:`vaebench_hvae.plugin`); nothing here
imports torch until a component is built.
"""

from __future__ import annotations

__version__ = "0.1.1"
