"""The Sylvester flow posterior (van den Berg et al. 2018, "Sylvester Normalizing Flows for
Variational Inference"), in its Householder form (H-SNF).

Each step is ``z' = z + Q R1 tanh(R2 Q^T z + b)`` with Q orthogonal (a product of Householder
reflections), R1, R2 upper triangular and b a vector, all functions of x. By Sylvester's
determinant identity ``log |det| = sum_i log(1 + h'(a_i) R1_ii R2_ii)`` with ``a = R2 Q^T z +
b``; the diagonals are ``tanh`` of a free value, so ``R1_ii R2_ii > -1`` and every step is
invertible. The inverse works in ``v = Q^T z`` coordinates, where the step is triangular:
back-substitution from the last dimension, each a one-dimensional monotone equation solved by
bisection and polished by Newton steps (the last one differentiable, which gives the implicit
function theorem's gradient); running sums make each step's inverse O(M^2) per value.
"""

from __future__ import annotations

import torch
from torch import nn

from vaebench_flows.householder import reflect
from vaebench_flows.posterior import AmortizedFlow, Chain

BISECTIONS = 20  # the bracket starts at most 2 wide: 2 / 2**20 ~ 2e-6 ...
NEWTON = 3  # ... then Newton's quadratic convergence reaches float resolution


def matvec(r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``r [B, M, M]`` times ``v [..., B, M]``."""
    return (r @ v.unsqueeze(-1)).squeeze(-1)


def solve_scalar(
    t: torch.Tensor, c: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor
) -> torch.Tensor:
    """The root x of ``g(x) = x + d1 tanh(d2 x + c) - t``, increasing in x as d1 d2 > -1."""

    def newton(x: torch.Tensor) -> torch.Tensor:
        th = torch.tanh(d2 * x + c)
        return x - (x + d1 * th - t) / (1 + d1 * d2 * (1 - th * th))

    with torch.no_grad():
        lo, hi = t - d1.abs(), t + d1.abs()  # |tanh| <= 1 brackets the root
        for _ in range(BISECTIONS):
            mid = (lo + hi) / 2
            below = mid + d1 * torch.tanh(d2 * mid + c) < t
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        x = (lo + hi) / 2
        for _ in range(NEWTON - 1):
            x = torch.minimum(torch.maximum(newton(x), lo), hi)  # never leave the bracket
    # A last step taken with autograd: at the root its derivative is -dg/dtheta / g'(x), the
    # implicit function theorem's gradient, while the value moves by rounding error only.
    return newton(x)


class SylvesterStep:
    """One step bound to a batch: reflections ``u [B, K, M]``, ``r1, r2 [B, M, M]`` upper
    triangular, ``b [B, M]``."""

    def __init__(self, u: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, b: torch.Tensor):
        self.u, self.r1, self.r2, self.b = u, r1, r2, b
        self.d1 = torch.diagonal(r1, dim1=-2, dim2=-1)
        self.d2 = torch.diagonal(r2, dim1=-2, dim2=-1)

    def _q_transpose(self, z: torch.Tensor) -> torch.Tensor:  # Q = H_1 ... H_K
        for k in range(self.u.shape[-2]):
            z = reflect(self.u[..., k, :], z)
        return z

    def _q(self, v: torch.Tensor) -> torch.Tensor:
        for k in reversed(range(self.u.shape[-2])):
            v = reflect(self.u[..., k, :], v)
        return v

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self._q_transpose(z)
        th = torch.tanh(matvec(self.r2, v) + self.b)
        logdet = torch.log1p(self.d1 * self.d2 * (1 - th * th)).sum(-1)
        return self._q(v + matvec(self.r1, th)), logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        target = self._q_transpose(y)
        target = target.expand(torch.broadcast_shapes(target.shape, self.b.shape))
        m = target.shape[-1]
        # Solving from the last dimension up, a = R2 v + b and R1 tanh(a) are accumulated one
        # solved column at a time: entry i then holds exactly what v_>i contributes.
        pre = self.b.expand(target.shape)
        known = torch.zeros_like(target)
        solved: list[torch.Tensor] = []
        for i in reversed(range(m)):
            v_i = solve_scalar(
                target[..., i] - known[..., i], pre[..., i], self.d1[..., i], self.d2[..., i]
            )
            solved.append(v_i)
            pre = pre + self.r2[..., :, i] * v_i.unsqueeze(-1)  # a_i is now complete
            known = known + self.r1[..., :, i] * torch.tanh(pre[..., i : i + 1])
        return self._q(torch.stack(solved[::-1], -1))


class SylvesterFlow(AmortizedFlow):
    """``steps`` Householder-Sylvester steps with ``reflections`` reflections in each Q."""

    def __init__(self, hidden: int, latent: int, steps: int, reflections: int) -> None:
        super().__init__()
        self.steps, self.latent, self.reflections = steps, latent, reflections
        per_step = 2 * latent * latent + latent * (reflections + 1)
        self.head = nn.Linear(hidden, steps * per_step) if steps else None
        self.register_buffer("upper", torch.ones(latent, latent).triu(1), persistent=False)

    def bind(self, h: torch.Tensor) -> Chain:
        if self.head is None:
            return Chain([])
        m, k = self.latent, self.reflections
        out = self.head(h).unflatten(-1, (self.steps, -1))
        eye = torch.eye(m, device=h.device, dtype=h.dtype)
        steps = []
        for t in range(self.steps):
            full1, full2, u, b = out[..., t, :].split([m * m, m * m, k * m, m], dim=-1)
            full1, full2 = full1.unflatten(-1, (m, m)), full2.unflatten(-1, (m, m))
            # Diagonals through tanh keep R1_ii R2_ii in (-1, 1): every step invertible.
            r1 = full1 * self.upper + torch.tanh(full1) * eye
            r2 = full2 * self.upper + torch.tanh(full2) * eye
            steps.append(SylvesterStep(u.unflatten(-1, (k, m)), r1, r2, b))
        return Chain(steps)
