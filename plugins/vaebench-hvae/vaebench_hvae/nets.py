"""The networks of the two-layer model: hidden layers of three kinds, networks of one input or
of two joined inputs, and Gaussian heads.

* ``leaky_relu``: Linear then LeakyReLU, as vaebench's built-in MLPs;
* ``tanh``: Linear then tanh (Burda et al. 2015);
* ``gated``: ``Linear_h(a) * sigmoid(Linear_g(a))`` (the GatedDense of Tomczak & Welling 2018).

A network of two inputs (Tomczak & Welling's q(z1|x, z2) and p(x|z1, z2)) passes each input
through one hidden layer, joins the two and applies one more hidden layer. The joining layer
is a Linear over the concatenation, computed as the sum of its two column blocks applied to
each part: the same function and parameters, but the parts broadcast against each other, so
scoring n draws of z2 against N points (the aggregate-posterior metrics) never builds the
concatenated ``[n, N, 2 * width]`` input.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Dense(nn.Module):
    """One hidden layer: Linear then ``activation`` (or gated)."""

    def __init__(self, n_in: int, n_out: int, activation: str) -> None:
        super().__init__()
        self.activation = activation
        self.h = nn.Linear(n_in, n_out)
        if activation == "gated":
            self.g = nn.Linear(n_in, n_out)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return _activate(
            self.activation, self.h(a), self.g(a) if self.activation == "gated" else None
        )


class JoinedLinear(nn.Module):
    """``Linear(n_a + n_b, n_out)`` applied to ``cat(a, b)``, with ``a`` and ``b`` broadcast
    against each other in their leading dimensions."""

    def __init__(self, n_a: int, n_b: int, n_out: int) -> None:
        super().__init__()
        self.n_a = n_a
        self.linear = nn.Linear(n_a + n_b, n_out)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w = self.linear.weight
        return F.linear(a, w[:, : self.n_a]) + F.linear(b, w[:, self.n_a :], self.linear.bias)


class JoinedDense(nn.Module):
    """A hidden layer over two inputs: :class:`JoinedLinear` then ``activation`` (or gated)."""

    def __init__(self, n_a: int, n_b: int, n_out: int, activation: str) -> None:
        super().__init__()
        self.activation = activation
        self.h = JoinedLinear(n_a, n_b, n_out)
        if activation == "gated":
            self.g = JoinedLinear(n_a, n_b, n_out)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        gate = self.g(a, b) if self.activation == "gated" else None
        return _activate(self.activation, self.h(a, b), gate)


def _activate(activation: str, h: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    if activation == "gated":
        return h * torch.sigmoid(gate)
    if activation == "tanh":
        return torch.tanh(h)
    return F.leaky_relu(h)


class Net(nn.Module):
    """Two hidden layers of ``width``, then a Linear to ``n_out``."""

    def __init__(self, n_in: int, width: int, n_out: int, activation: str) -> None:
        super().__init__()
        self.hidden = nn.Sequential(Dense(n_in, width, activation), Dense(width, width, activation))
        self.out = nn.Linear(width, n_out)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(a))


class JoinedNet(nn.Module):
    """One hidden layer per input, a hidden layer over both, then a Linear to ``n_out``."""

    def __init__(self, n_a: int, n_b: int, width: int, n_out: int, activation: str) -> None:
        super().__init__()
        self.branch_a = Dense(n_a, width, activation)
        self.branch_b = Dense(n_b, width, activation)
        self.joint = JoinedDense(width, width, width, activation)
        self.out = nn.Linear(width, n_out)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(self.joint(self.branch_a(a), self.branch_b(b)))


class GaussianHead(nn.Module):
    """Maps a network's output of ``2 * latent`` units to a diagonal Normal's mean and scale,
    the log-variance clamped to ``bounds`` where they are given (Tomczak &
    Welling's hardtanh(-6, 2)). Burda et al.'s ``sigma = exp(Linear)`` is the same family:
    ``exp(0.5 * logvar)`` with ``logvar`` a Linear output."""

    def __init__(self, latent: int, bounds: tuple[float, float] | None) -> None:
        super().__init__()
        self.latent = latent
        self.bounds = bounds

    def forward(self, out: torch.Tensor) -> torch.distributions.Normal:
        mu, logvar = out.split(self.latent, dim=-1)
        if self.bounds is not None:
            logvar = logvar.clamp(*self.bounds)
        return torch.distributions.Normal(mu, torch.exp(0.5 * logvar), validate_args=False)


def initialise(module: nn.Module, init: str) -> None:
    """``he``: every Linear weight drawn from N(0, 2 / fan_in), biases as torch leaves them
    (Tomczak & Welling's reference code); ``default``: torch's defaults, untouched."""
    if init != "he":
        return
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, math.sqrt(2.0 / m.in_features))
