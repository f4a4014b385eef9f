"""The convolutional encoder and decoders: what data they fit, and pixel order preserved."""

from __future__ import annotations

import torch
from vaebench_conv import plugin
from vaebench_conv.conv import ConvDecoder, ConvGaussianEncoder

from vaebench.contracts import DataSpec

MNIST = DataSpec(dim=784, levels=2, image_shape=(28, 28))
DIGITS = DataSpec(dim=64, levels=17, image_shape=(8, 8))


def test_fits_only_images_it_can_model() -> None:
    assert plugin.fits_conv(MNIST) and plugin.fits_conv(DIGITS)
    assert not plugin.fits_conv(DataSpec(dim=100, levels=2, image_shape=(10, 10)))
    assert not plugin.fits_conv(DataSpec(dim=784, levels=2))  # flat vectors
    assert not plugin.fits_conv(DataSpec(dim=785, levels=2, image_shape=(28, 28)))
    assert plugin.fits_pixelcnn(DataSpec(dim=100, levels=2, image_shape=(10, 10)))
    assert not plugin.fits_pixelcnn(DataSpec(dim=27, levels=2, image_shape=(3, 3, 3)))


def test_categorical_logits_keep_raster_order() -> None:
    torch.manual_seed(0)
    decoder = ConvDecoder(DIGITS, hidden=16, latent=3)
    z = torch.randn(2, 5, 3)
    logits = decoder.logits(z)  # [2, 5, 64, 17]
    raw = decoder.net(z.reshape(-1, 3)).reshape(2, 5, 17, 8, 8)
    for d in (0, 9, 63):
        assert torch.equal(logits[:, :, d], raw[:, :, :, d // 8, d % 8])


def test_encoder_reads_images_in_raster_order() -> None:
    """A horizontal stripe and its transpose (a vertical stripe) give different posteriors
    only if the flat vector is folded into rows, as the suites lay images out."""
    torch.manual_seed(0)
    encoder = ConvGaussianEncoder(MNIST, hidden=16, latent=2)
    stripe = torch.zeros(28, 28)
    stripe[3] = 1
    a = encoder(stripe.reshape(1, -1)).mean
    b = encoder(stripe.T.reshape(1, -1)).mean
    assert not torch.allclose(a, b)
    images = encoder.net[0].weight.new_zeros(1, 1, 28, 28)
    images[0, 0, 3] = 1
    assert torch.allclose(encoder.net(images).split(2, -1)[0], a)


def test_bernoulli_decoder_batch_and_event() -> None:
    decoder = ConvDecoder(MNIST, hidden=16, latent=3)
    dist = decoder(torch.randn(4, 2, 3))
    assert dist.batch_shape == (4, 2) and dist.event_shape == (784,)
    x = torch.randint(0, 2, (2, 784)).float()
    assert dist.log_prob(x).shape == (4, 2)
