"""Image grids of a trained model, as PNG bytes, with no imaging library.

The PNG encoder writes 8-bit greyscale (colour type 0) or RGB (colour type 2) images, one
unfiltered scan line after another, deflated with zlib (PNG specification, W3C 2003, sections
5 and 11). :func:`model_image_artifacts` makes the two grids saved beside each record of an
image suite: prior samples (decoder means, not noisy draws) and test images beside their
reconstructions.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from vaebench.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from vaebench.contracts import SuiteData

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Tiles are enlarged to at least this many pixels a side, so 8x8 digits are visible as saved.
MIN_TILE_PIXELS = 28
IMAGE_SEED = 1234


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array ``[H, W]`` (greyscale) or ``[H, W, 3]`` (RGB)."""
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype != np.uint8:
        raise ConfigError(f"PNG pixels must be uint8, got {pixels.dtype}; scale to 0..255 first")
    if pixels.ndim == 2:
        colour_type = 0
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        colour_type = 2
    else:
        raise ConfigError(f"PNG pixels must be [H, W] or [H, W, 3], got shape {pixels.shape}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ConfigError(f"cannot encode an empty image of shape {pixels.shape}")
    rows = pixels.reshape(height, -1)
    # Filter type 0 (None) before every scan line: simple, and zlib still compresses well.
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _as_array(images: Any, name: str) -> np.ndarray:
    if hasattr(images, "detach"):
        images = images.detach().cpu().double().numpy()
    array = np.asarray(images, dtype=np.float64)
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] != 3):
        raise ConfigError(
            f"{name} must be [N, H, W] (grey) or [N, H, W, 3] (RGB), got shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ConfigError(f"{name} holds no images")
    if not np.isfinite(array).all():
        raise ConfigError(f"{name} holds NaN or infinite values; images must be in [0, 1]")
    # Decoder means can overshoot [0, 1] by rounding; anything further is a caller's mistake.
    if array.min() < -1e-3 or array.max() > 1 + 1e-3:
        raise ConfigError(
            f"{name} values range over [{array.min():.3g}, {array.max():.3g}]; scale them to "
            "[0, 1] (data levels / (levels - 1))"
        )
    return np.clip(array, 0.0, 1.0)


def _check_layout(ncol: int, pad: int, scale: int) -> None:
    for name, value, least in (("ncol", ncol, 1), ("pad", pad, 0), ("scale", scale, 1)):
        if not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be an integer of at least {least}, got {value!r}")


def _enlarge(array: np.ndarray, scale: int) -> np.ndarray:
    return array.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else array


def _tile(array: np.ndarray, ncol: int, pad: int, pad_value: float) -> np.ndarray:
    n, h, w = array.shape[:3]
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    canvas = np.full(
        (nrow * (h + pad) + pad, ncol * (w + pad) + pad, *array.shape[3:]), pad_value, np.float64
    )
    for index in range(n):
        top = pad + (index // ncol) * (h + pad)
        left = pad + (index % ncol) * (w + pad)
        canvas[top : top + h, left : left + w] = array[index]
    return np.round(canvas * 255.0).astype(np.uint8)


def image_grid_png(
    images: torch.Tensor | np.ndarray,
    ncol: int,
    pad: int = 1,
    *,
    scale: int = 1,
    pad_value: float = 1.0,
) -> bytes:
    """A PNG of ``images`` (``[N, H, W]`` or ``[N, H, W, 3]`` floats in [0, 1]) laid out in
    rows of ``ncol``, ``pad`` pixels apart (in ``pad_value``), each pixel enlarged ``scale``
    times."""
    _check_layout(ncol, pad, scale)
    array = _enlarge(_as_array(images, "images"), scale)
    return encode_png(_tile(array, ncol, pad, pad_value))


def pair_grid_png(
    originals: torch.Tensor | np.ndarray,
    reconstructions: torch.Tensor | np.ndarray,
    pairs_per_row: int = 4,
    pad: int = 1,
    *,
    scale: int = 1,
    pad_value: float = 1.0,
) -> bytes:
    """A PNG with each original ``pad`` pixels left of its reconstruction, ``pairs_per_row``
    pairs to a row; pairs stand ``3 * pad`` pixels apart so that they read as pairs."""
    _check_layout(pairs_per_row, pad, scale)
    first = _enlarge(_as_array(originals, "originals"), scale)
    second = _enlarge(_as_array(reconstructions, "reconstructions"), scale)
    if first.shape != second.shape:
        raise ConfigError(
            f"originals {first.shape} and reconstructions {second.shape} differ in shape"
        )
    gap = np.full((first.shape[0], first.shape[1], pad, *first.shape[3:]), pad_value)
    pairs = np.concatenate([first, gap, second], axis=2)
    return encode_png(_tile(pairs, pairs_per_row, 3 * pad, pad_value))


def fold_images(x: torch.Tensor | np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Flat rows ``[N, D]`` as images: ``(H, W)`` gives ``[N, H, W]``; ``(C, H, W)`` with C = 1
    gives ``[N, H, W]`` and with C = 3 gives ``[N, H, W, 3]`` (channels first, as in torch)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    array = np.asarray(x, dtype=np.float64)
    shape = tuple(int(s) for s in image_shape)
    if array.ndim != 2 or array.shape[1] != math.prod(shape):
        raise ConfigError(
            f"cannot fold data of shape {array.shape} into images of shape {shape}; the suite's "
            "DataSpec.image_shape must multiply to the data dimension"
        )
    n = array.shape[0]
    if len(shape) == 2:
        return array.reshape(n, *shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        folded = array.reshape(n, *shape).transpose(0, 2, 3, 1)
        return folded[..., 0] if shape[0] == 1 else folded
    raise ConfigError(
        f"image_shape {shape} is not (H, W), (1, H, W) or (3, H, W); grids cannot be drawn"
    )


def model_image_artifacts(model: Any, data: SuiteData, n: int = 64) -> dict[str, bytes]:
    """``{"samples.png": ..., "recon.png": ...}`` for a trained :class:`vaebench.model.VAE`.

    ``samples.png`` holds ``n`` decoder means at prior samples; ``recon.png`` the first ``n // 2``
    test images, each beside the decoder mean at its posterior mean. Values are data levels
    divided by ``levels - 1``. Empty when the suite's data are not images. The prior samples use
    a fixed seed, so the grids are reproducible; the caller's random state is left as it was.
    """
    import torch

    shape = data.spec.image_shape
    if shape is None:
        return {}
    if not isinstance(n, int) or n < 2:
        raise ConfigError(f"n must be an integer of at least 2 images, got {n!r}")
    top = max(1, data.spec.levels - 1)
    tile = max(shape[-2:])
    scale = max(1, math.ceil(MIN_TILE_PIXELS / tile))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(IMAGE_SEED)
            samples = model.generate(n)
            originals = data.test[: max(1, n // 2)].to(device)
            recon = model.reconstruct(originals)
    finally:
        model.train(was_training)
    ncol = math.ceil(math.sqrt(n))

    def unit(values: torch.Tensor) -> np.ndarray:
        # A decoder's mean may stray past the level range by rounding; grids show [0, 1].
        return fold_images((values.double() / top).clamp(0.0, 1.0), shape)

    return {
        "samples.png": image_grid_png(unit(samples), ncol, scale=scale, pad=scale),
        "recon.png": pair_grid_png(
            unit(originals),
            unit(recon),
            pairs_per_row=max(1, ncol // 2),
            scale=scale,
            pad=scale,
        ),
    }
