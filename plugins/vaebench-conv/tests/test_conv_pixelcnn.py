"""Known answers for the PixelCNN decoder: causality of the masks, a normalised distribution,
sampling that follows it, and the banded sampling pass equal to the full network."""

from __future__ import annotations

import itertools

import pytest
import torch
from vaebench_conv import pixelcnn
from vaebench_conv.pixelcnn import PixelCNNDecoder

from vaebench.contracts import DataSpec


def _decoder(spec: DataSpec, latent: int = 3, layers: int = 2, seed: int = 0) -> PixelCNNDecoder:
    torch.manual_seed(seed)
    return PixelCNNDecoder(spec, latent, channels=8, layers=layers, z_channels=2).double()


def _every_image(spec: DataSpec) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(spec.levels), repeat=spec.dim))).double()


def test_each_pixel_sees_only_the_pixels_before_it() -> None:
    spec = DataSpec(dim=25, levels=2, image_shape=(5, 5))
    net = _decoder(spec).net
    z = torch.randn(1, 3, dtype=torch.double)
    x = torch.randint(0, 2, (1, 25)).double().requires_grad_()
    logits = net(x, z).flatten(1)  # [1, D]
    for i in range(25):
        (grad,) = torch.autograd.grad(logits[0, i], x, retain_graph=True)
        assert torch.count_nonzero(grad[0, i:]) == 0  # not itself, nothing after it
        if i > 0:
            assert torch.count_nonzero(grad[0, :i]) > 0


@pytest.mark.parametrize("levels", [2, 3])
def test_probabilities_of_every_image_sum_to_one(levels: int) -> None:
    spec = DataSpec(dim=4, levels=levels, image_shape=(2, 2))
    z = torch.randn(2, 3, dtype=torch.double)
    dist = _decoder(spec)(z.unsqueeze(1))  # batch [2, 1]
    log_p = dist.log_prob(_every_image(spec))  # [2, L^4]
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(2, dtype=torch.double))


def test_samples_follow_the_probabilities() -> None:
    spec = DataSpec(dim=4, levels=2, image_shape=(2, 2))
    decoder = _decoder(spec, seed=1)
    z = torch.randn(3, dtype=torch.double)
    images = _every_image(spec)
    with torch.no_grad():
        probs = decoder(z).log_prob(images).exp()
    torch.manual_seed(2)
    n = 4000
    draws = decoder(z).sample((n,))
    index = (draws * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.double)).sum(-1).long()
    counts = torch.bincount(index, minlength=16).double()
    chi2 = float(((counts - n * probs) ** 2 / (n * probs)).sum())
    assert chi2 < 37.7  # chi-square, 15 degrees of freedom: exceeded by chance 0.1% of the time


def test_banded_pass_gives_the_full_networks_logits() -> None:
    spec = DataSpec(dim=7 * 6, levels=2, image_shape=(7, 6))
    net = _decoder(spec, layers=1).net  # sees 4 rows above: bands start below the top
    x = torch.randint(0, 2, (2, spec.dim)).double()
    zmap = net.z_features(torch.randn(2, 3, dtype=torch.double))
    full = net.logits(net.images(x), zmap)
    for row in range(7):
        top = max(0, row - net.rows_seen)
        band = net.logits(net.images(x)[:, :, top : row + 1], zmap[:, :, top : row + 1])
        assert torch.allclose(band[:, :, -1], full[:, :, row])


def test_log_prob_broadcasts_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DataSpec(dim=16, levels=3, image_shape=(4, 4))
    decoder = _decoder(spec)
    z = torch.randn(5, 2, 3, dtype=torch.double)  # [k, B, M]
    x = torch.randint(0, 3, (2, 16)).double()  # [B, D]
    together = decoder(z).log_prob(x)
    assert together.shape == (5, 2)
    pairs = torch.stack([decoder(z[i, j]).log_prob(x[j]) for i in range(5) for j in range(2)])
    assert torch.allclose(together.flatten(), pairs)
    monkeypatch.setattr(pixelcnn, "CHUNK_FLOATS", 8 * 16 * 3)  # three images per chunk
    assert torch.allclose(decoder(z).log_prob(x), together)


def test_z_changes_the_distribution() -> None:
    spec = DataSpec(dim=16, levels=2, image_shape=(4, 4))
    decoder = _decoder(spec)
    x = torch.randint(0, 2, (1, 16)).double()
    a = decoder(torch.zeros(1, 3, dtype=torch.double)).log_prob(x)
    b = decoder(torch.ones(1, 3, dtype=torch.double)).log_prob(x)
    assert not torch.allclose(a, b)
