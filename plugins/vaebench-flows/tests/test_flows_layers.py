"""Known answers for every flow step: log-determinants against autograd Jacobians, exact
inverses, broadcasting, and the MADE's autoregressive structure."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian
from vaebench_flows.householder import Reflection
from vaebench_flows.iaf import MADE, IAFStep
from vaebench_flows.realnvp import AffineCoupling
from vaebench_flows.sylvester import SylvesterFlow

M, B = 4, 3


def _sylvester_step(seed: int) -> object:
    torch.manual_seed(seed)
    flow = SylvesterFlow(hidden=5, latent=M, steps=1, reflections=2).double()
    return flow.bind(torch.randn(B, 5, dtype=torch.double)).steps[0]


def _iaf_step(seed: int, reverse: bool) -> object:
    torch.manual_seed(seed)
    made = MADE(M, 16, 5).double()
    with torch.no_grad():  # move the gates off their initial value so the test is not trivial
        made.out.bias.normal_()
    return IAFStep(made, made.context(torch.randn(B, 5, dtype=torch.double)), reverse)


def _coupling(seed: int) -> object:
    torch.manual_seed(seed)
    layer = AffineCoupling(torch.arange(M) % 2 == 0, 8).double()
    with torch.no_grad():
        layer.net[-1].weight.normal_()  # a zero-initialised layer would be the identity
    return layer


STEPS = {
    "householder": lambda seed: Reflection(torch.randn(B, M, dtype=torch.double)),
    "iaf": lambda seed: _iaf_step(seed, reverse=False),
    "iaf-reversed": lambda seed: _iaf_step(seed, reverse=True),
    "sylvester": _sylvester_step,
    "realnvp-coupling": _coupling,
}


def _one_point(step: object, z: torch.Tensor, row: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a batch-bound step to ``z [M]`` as data point ``row``: the others get copies."""
    zs = z.expand(B, M).clone()
    out, logdet = step.forward(zs)
    return out[row], logdet.expand(B)[row]


@pytest.mark.parametrize("name", sorted(STEPS))
def test_log_determinant_matches_autograd_jacobian(name: str) -> None:
    torch.manual_seed(1)
    step = STEPS[name](1)
    for row in range(B):
        z = torch.randn(M, dtype=torch.double)
        jac = jacobian(lambda v, r=row: _one_point(step, v, r)[0], z)
        expected = torch.linalg.slogdet(jac).logabsdet
        assert torch.allclose(_one_point(step, z, row)[1], expected, atol=1e-10)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_inverse_recovers_the_input(name: str) -> None:
    torch.manual_seed(2)
    step = STEPS[name](2)
    z = 2 * torch.randn(5, B, M, dtype=torch.double)
    y, _ = step.forward(z)
    assert torch.allclose(step.inverse(y), z, atol=1e-9)


@pytest.mark.parametrize("name", sorted(set(STEPS) - {"realnvp-coupling"}))
def test_inverse_broadcasts_a_value_against_every_point(name: str) -> None:
    """A value of shape [k, 1, M] against per-point parameters [B] gives every pair [k, B, M]
    (what aggregate-posterior metrics ask of q.log_prob)."""
    torch.manual_seed(2)
    step = STEPS[name](2)
    one = torch.randn(5, 1, M, dtype=torch.double)
    pairs = step.inverse(one)
    assert pairs.shape == (5, B, M)
    for row in range(B):
        back, _ = step.forward(pairs[:, row : row + 1].expand(5, B, M).contiguous())
        assert torch.allclose(back[:, row], one[:, 0], atol=1e-9)


def test_sylvester_inverse_has_the_inverse_jacobian() -> None:
    """The differentiable last Newton step gives the implicit-function gradient."""
    step = _sylvester_step(3)
    y = torch.randn(M, dtype=torch.double)
    inv = jacobian(lambda v: step.inverse(v.expand(B, M))[0], y)
    z = step.inverse(y.expand(B, M))[0].detach()
    fwd = jacobian(lambda v: _one_point(step, v, 0)[0], z)
    assert torch.allclose(inv @ fwd, torch.eye(M, dtype=torch.double), atol=1e-8)


def test_made_outputs_depend_only_on_earlier_inputs() -> None:
    torch.manual_seed(4)
    made = MADE(M, 16, 5).double()
    context = made.context(torch.randn(1, 5, dtype=torch.double))
    z = torch.randn(1, M, dtype=torch.double)
    for out in range(2):
        jac = jacobian(lambda v, o=out: made(v, context)[o], z)[0, :, 0, :]
        assert torch.count_nonzero(jac.triu()) == 0  # output i sees only inputs < i
        assert torch.count_nonzero(jac.tril(-1)) > 0


def test_reflection_of_zero_vector_is_identity() -> None:
    z = torch.randn(2, B, M)
    y, logdet = Reflection(torch.zeros(B, M)).forward(z)
    assert torch.equal(y, z) and float(logdet) == 0.0
