"""A PixelCNN decoder conditioned on z (van den Oord et al. 2016; as the decoder of a VAE:
Gulrajani et al. 2017, "PixelVAE", and Chen et al. 2017, "Variational Lossy Autoencoder").

p(x|z) = prod_i p(x_i | x_<i, z) in raster order. Masked convolutions see only the pixels
above and to the left (a type-A mask hides the centre in the first layer; type-B layers may
see it). z enters every layer through a learned spatial map, added after each masked
convolution. Such a decoder can model the data well without z, which is why it is here: it
is the textbook case of posterior collapse (Bowman et al. 2016), where KL(q(z|x) || p(z))
falls to about zero. The plain masked stack has the known blind spot (a region above-right
of each pixel it never sees); the gated two-stack design of van den Oord et al. removes it, at
more code than a benchmark component needs.

``log_prob(x)`` runs the network once on x itself (teacher forcing). Sampling is the
autoregressive loop: one network pass per pixel, slow but exact; benchmarks draw few samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from vaebench.contracts import DataSpec

CHUNK_FLOATS = 2**22  # activations per evaluation chunk of images (memory cap, not speed)


class MaskedConv2d(nn.Conv2d):
    """A same-padded convolution that sees only pixels above, and left of, the centre
    (and the centre itself for mask type ``"B"``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, mask_type: str) -> None:
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        mask = torch.ones(kernel, kernel)
        centre = kernel // 2
        mask[centre, centre + (mask_type == "B") :] = 0
        mask[centre + 1 :] = 0
        self.register_buffer("mask", mask[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    """Logits of every pixel given the pixels before it and z."""

    def __init__(
        self, data: DataSpec, latent: int, channels: int, layers: int, z_channels: int
    ) -> None:
        super().__init__()
        self.h, self.w = data.image_shape  # type: ignore[misc]
        self.levels = data.levels
        self.out_channels = 1 if data.binary else data.levels
        self.z_channels = z_channels
        self.z_map = nn.Linear(latent, z_channels * self.h * self.w)
        self.first = MaskedConv2d(1, channels, 7, "A")
        self.hidden = nn.ModuleList(MaskedConv2d(channels, channels, 3, "B") for _ in range(layers))
        self.z_in = nn.ModuleList(nn.Conv2d(z_channels, channels, 1) for _ in range(layers + 1))
        self.out = nn.Conv2d(channels, self.out_channels, 1)

    @property
    def rows_seen(self) -> int:
        """Rows above a pixel that can reach its logits: 3 through the 7x7 layer, then one per
        3x3 layer (masks never look below)."""
        return 3 + len(self.hidden)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``x [N, D]`` levels, ``z [N, M]`` -> logits ``[N, C, H, W]``."""
        return self.logits(self.images(x), self.z_features(z))

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 1, self.h, self.w) / (self.levels - 1) - 0.5

    def z_features(self, z: torch.Tensor) -> torch.Tensor:
        return self.z_map(z).reshape(-1, self.z_channels, self.h, self.w)

    def logits(self, images: torch.Tensor, zmap: torch.Tensor) -> torch.Tensor:
        """Logits for images (or a band of rows of them) and the matching band of z features."""
        a = F.relu(self.first(images) + self.z_in[0](zmap))
        for layer, z_in in zip(self.hidden, self.z_in[1:], strict=True):
            a = a + F.relu(layer(a) + z_in(zmap))  # residual: deep stacks still train
        return self.out(a)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``sum_i log p(x_i | x_<i, z)`` for ``x [N, D]``, ``z [N, M]`` -> ``[N]``."""
        logits = self(x, z)
        target = x.reshape(-1, 1, self.h, self.w)
        if self.out_channels == 1:
            per_pixel = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            per_pixel = -F.cross_entropy(logits, target.squeeze(1).long(), reduction="none")
        return per_pixel.flatten(1).sum(-1)


class PixelCNNDistribution(Distribution):
    """p(x|z) for z of shape ``[..., M]``: batch ``[...]``, event ``[D]``."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, net: PixelCNN, z: torch.Tensor) -> None:
        self.net = net
        self.z = z
        dim = net.h * net.w
        super().__init__(z.shape[:-1], torch.Size([dim]), validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.integer_interval(0, self.net.levels - 1), 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        x = value.expand(*shape, value.shape[-1]).reshape(-1, value.shape[-1])
        z = self.z.expand(*shape, self.z.shape[-1]).reshape(-1, self.z.shape[-1])
        per_image = CHUNK_FLOATS // (self.net.first.out_channels * x.shape[-1]) or 1
        out = [
            self.net.log_prob(x[i : i + per_image], z[i : i + per_image])
            for i in range(0, x.shape[0], per_image)
        ]
        return torch.cat(out).reshape(shape)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        z = self.z.expand(*shape, self.z.shape[-1]).reshape(-1, self.z.shape[-1])
        net = self.net
        n, dim = z.shape[0], self.event_shape[0]
        zmap = net.z_features(z)
        x = torch.zeros(n, dim, device=z.device, dtype=z.dtype)
        for i in range(dim):  # raster order: pixel i sees the pixels already drawn
            row, col = divmod(i, net.w)
            # Only rows_seen rows above reach this pixel: run the net on that band alone.
            top = max(0, row - net.rows_seen)
            band = net.images(x)[:, :, top : row + 1]
            logits = net.logits(band, zmap[:, :, top : row + 1])[:, :, -1, col]  # [n, C]
            if net.out_channels == 1:
                x[:, i] = torch.bernoulli(torch.sigmoid(logits[:, 0]))
            else:
                x[:, i] = torch.multinomial(torch.softmax(logits, -1), 1)[:, 0].to(x.dtype)
        return x.reshape(*shape, dim)


class PixelCNNDecoder(nn.Module):
    def __init__(
        self, data: DataSpec, latent: int, channels: int, layers: int, z_channels: int
    ) -> None:
        super().__init__()
        self.net = PixelCNN(data, latent, channels, layers, z_channels)

    def forward(self, z: torch.Tensor) -> PixelCNNDistribution:
        return PixelCNNDistribution(self.net, z)
