"""The conv encoder and the conv logistic-mixture decoder on 32x32x3 colour images."""

from __future__ import annotations

import pytest
import torch
from vaebench_conv.conv import ConvLogisticMixtureDecoder

from vaebench.contracts import DataSpec
from vaebench.testing import build_harness, check_gradients, check_sampling, check_shapes

COLOUR = DataSpec(dim=3 * 32 * 32, levels=256, image_shape=(3, 32, 32))


@pytest.mark.slow
def test_colour_components_meet_the_contract() -> None:
    for kind, name in (("encoder", "conv-gaussian"), ("decoder", "conv-logistic-mixture")):
        partners = {"decoder": "conv-logistic-mixture"} if kind == "encoder" else None
        harness = build_harness(kind, name, COLOUR, partners=partners)
        for check in (check_shapes, check_gradients, check_sampling):
            check(harness)


def test_each_channel_plane_scores_its_own_pixels() -> None:
    """Output maps are (parameter, component, channel): the means of channel 1 at row 2,
    column 5 must govern data dimension 1 * 1024 + 2 * 32 + 5 and no other."""
    torch.manual_seed(0)
    decoder = ConvLogisticMixtureDecoder(COLOUR, 16, 4, mixtures=2)
    z = torch.randn(1, 4)
    out = decoder.net(z).detach().requires_grad_(True)  # [1, 3 * 2 * 3, 32, 32]

    class Fixed(torch.nn.Module):
        def forward(self, _: torch.Tensor) -> torch.Tensor:
            return out

    decoder.net = Fixed()
    x = torch.randint(0, 256, (1, COLOUR.dim)).float()
    per_dim = torch.logsumexp(decoder(z).component_log_probs(x), -1)  # [1, D]
    per_dim[0, 1 * 1024 + 2 * 32 + 5].backward()
    grad = out.grad.unflatten(1, (3, 2, 3))[0, 1]  # means: [component, channel, H, W]
    assert grad.abs().sum(0).nonzero().tolist() == [[1, 2, 5]]
