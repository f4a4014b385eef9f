"""vaebench-conv: convolutional encoder and decoders for images, and a PixelCNN decoder.

Registered through the ``vaebench`` entry point (:mod:`vaebench_conv.plugin`); nothing here
imports torch until a component is built.
"""

from __future__ import annotations

__version__ = "0.1.0"
