"""The PNG encoder, grid layouts and a model's image artifacts, checked by decoding the bytes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch

from vaebench import images
from vaebench.contracts import DataSpec, SuiteData
from vaebench.errors import ConfigError
from vaebench.pipeline import build_model
from vaebench.suites import digits


def decode_png(data: bytes) -> np.ndarray:
    """A strict reader for what the encoder writes: chunks with valid CRCs, 8-bit grey or RGB,
    filter type 0 on every line."""
    assert data[:8] == images.PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and colour in (0, 2)
    channels = 1 if colour == 0 else 3
    raw = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(height, -1)
    assert (raw[:, 0] == 0).all()
    pixels = raw[:, 1:].reshape(height, width, channels)
    return pixels[..., 0] if channels == 1 else pixels


def test_encode_png_round_trips_grey_and_rgb():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    rgb = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(images.encode_png(grey)), grey)
    assert np.array_equal(decode_png(images.encode_png(rgb)), rgb)


def test_encoded_png_is_read_by_matplotlib():
    imread = pytest.importorskip("matplotlib.image").imread
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    read = imread(io.BytesIO(images.encode_png(grey)), format="png")
    assert np.allclose(read, grey / 255.0)


def test_image_grid_layout_padding_and_scale():
    tiles = np.stack([np.full((2, 3), v) for v in (0.0, 0.5, 1.0)])
    grid = decode_png(images.image_grid_png(tiles, ncol=2, pad=1, pad_value=0.25))
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1)
    assert (grid[1:3, 1:4] == 0).all() and (grid[1:3, 5:8] == 128).all()
    assert (grid[4:6, 1:4] == 255).all()
    assert (grid[4:6, 5:8] == 64).all()  # the empty fourth cell is background
    assert (grid[0] == 64).all() and (grid[:, 4] == 64).all()
    scaled = decode_png(images.image_grid_png(tiles[:1], ncol=4, pad=0, scale=3))
    assert scaled.shape == (6, 9) and (scaled == 0).all()


def test_pair_grid_puts_each_original_left_of_its_reconstruction():
    originals = np.stack([np.full((2, 2), 0.0), np.full((2, 2), 0.2)])
    recon = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 0.6)])
    grid = decode_png(images.pair_grid_png(originals, recon, pairs_per_row=1, pad=1))
    # A pair is original | 1 pad | reconstruction; pairs stand 3 pads apart.
    assert grid.shape == (2 * (2 + 3) + 3, 5 + 6)
    assert (grid[3:5, 3:5] == 0).all() and (grid[3:5, 6:8] == 255).all()
    assert (grid[8:10, 3:5] == 51).all() and (grid[8:10, 6:8] == 153).all()
    assert (grid[3:5, 5] == 255).all()


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (np.full((1, 2, 2), 1.5), "scale them to [0, 1]"),
        (np.full((1, 2, 2), np.nan), "NaN"),
        (np.zeros((2, 2)), "[N, H, W]"),
        (np.zeros((0, 2, 2)), "no images"),
    ],
)
def test_image_grid_rejects_bad_images(bad, words):
    with pytest.raises(ConfigError, match=r".*" + words.replace("[", r"\[").replace("]", r"\]")):
        images.image_grid_png(bad, ncol=1)


def test_grid_rejects_bad_layout_and_mismatched_pairs():
    with pytest.raises(ConfigError, match="ncol"):
        images.image_grid_png(np.zeros((1, 2, 2)), ncol=0)
    with pytest.raises(ConfigError, match="differ in shape"):
        images.pair_grid_png(np.zeros((2, 2, 2)), np.zeros((1, 2, 2)))


def test_fold_images_follows_the_suite_shape():
    x = np.arange(2 * 12, dtype=float).reshape(2, 12)
    assert images.fold_images(x, (3, 4)).shape == (2, 3, 4)
    assert np.array_equal(images.fold_images(x, (1, 3, 4)), x.reshape(2, 3, 4))
    rgb = images.fold_images(x, (3, 2, 2))
    assert rgb.shape == (2, 2, 2, 3) and rgb[0, 0, 1, 2] == x[0, 2 * 4 + 1]
    with pytest.raises(ConfigError, match="multiply to the data dimension"):
        images.fold_images(x, (5, 5))
    with pytest.raises(ConfigError, match="not \\(H, W\\)"):
        images.fold_images(x, (2, 2, 3))


def _digits_model(host):
    data = digits.load({"limit": 40})
    combination = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "mog"}
    torch.manual_seed(0)
    return build_model(host, combination, {}, data.spec, 4, 32), data


def test_model_image_artifacts_show_samples_and_test_reconstructions(host):
    model, data = _digits_model(host)
    model.train()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    out = images.model_image_artifacts(model, data, n=16)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's randomness is untouched
    assert model.training
    assert sorted(out) == ["recon.png", "samples.png"]
    assert out == images.model_image_artifacts(model, data, n=16)  # reproducible
    scale = images.MIN_TILE_PIXELS // 8 + (images.MIN_TILE_PIXELS % 8 > 0)
    tile = 8 * scale
    samples = decode_png(out["samples.png"])
    assert samples.shape == (4 * (tile + scale) + scale,) * 2
    recon = decode_png(out["recon.png"])
    pair, gap = 2 * tile + scale, 3 * scale
    assert recon.shape == (4 * (tile + gap) + gap, 2 * (pair + gap) + gap)
    # The first original is the first test digit, grey levels 0..16 scaled to 0..255.
    expected = np.round(data.test[0].reshape(8, 8).numpy() / 16 * 255).astype(np.uint8)
    first = recon[gap : gap + tile : scale, gap : gap + tile : scale]
    assert np.array_equal(first, expected)
    # Its reconstruction is the decoder mean at the posterior mean.
    model.eval()
    mean = model.reconstruct(data.test[:1])[0].reshape(8, 8).double().numpy()
    left = gap + tile + scale
    shown = recon[gap : gap + tile : scale, left : left + tile : scale]
    assert np.abs(shown.astype(float) - np.clip(mean / 16, 0, 1) * 255).max() <= 0.51


def test_model_image_artifacts_empty_without_image_shape(host):
    model, data = _digits_model(host)
    flat = SuiteData(DataSpec(64, 17, None), data.train, data.val, data.test)
    assert images.model_image_artifacts(model, flat) == {}
    with pytest.raises(ConfigError, match="at least 2"):
        images.model_image_artifacts(model, data, n=1)
