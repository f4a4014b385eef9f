"""Contracts: configuration validation, and checks that name the component breaking them."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from vaebench.components.priors import StandardNormalPrior
from vaebench.contracts import (
    Budget,
    EvalSettings,
    Suite,
    as_module,
    check_distribution,
    check_values,
)
from vaebench.errors import ConfigError, ContractError, VaebenchError
from vaebench.model import VAE

B, D, M = 5, 6, 3

# -- budgets and evaluation settings -------------------------------------------------------


@pytest.mark.parametrize("field", ["steps", "batch_size", "eval_every", "checkpoint_every"])
@pytest.mark.parametrize("value", [0, -3, 2.5])
def test_budget_integer_fields_must_be_positive_integers(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"budget {field} must be a positive integer"):
        Budget(**{field: value})


def test_budget_epochs_must_be_a_positive_integer() -> None:
    with pytest.raises(ConfigError, match="budget epochs must be a positive integer, got 0"):
        Budget(steps=None, epochs=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("patience", 0), ("max_seconds", 0.0), ("max_seconds", -1.0), ("lr", 0.0), ("lr", math.nan)],
)
def test_budget_other_fields(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"budget {field} must be"):
        Budget(**{field: value})


def test_budget_needs_exactly_one_of_steps_and_epochs() -> None:
    with pytest.raises(ConfigError, match="needs steps or epochs"):
        Budget(steps=None, epochs=None)
    with pytest.raises(ConfigError, match="either steps or epochs, not both"):
        Budget(steps=10, epochs=2)


def test_budget_total_steps() -> None:
    assert Budget(steps=7).total_steps(1000) == 7
    # 250 points in batches of 100: 3 steps per epoch, the last one partial
    assert Budget(steps=None, epochs=2, batch_size=100).total_steps(250) == 6
    assert Budget(steps=None, epochs=1, batch_size=50).total_steps(100) == 2


def test_budget_optional_limits_may_be_none() -> None:
    budget = Budget(steps=1, patience=None, max_seconds=None, checkpoint_every=None)
    assert budget.patience is None


@pytest.mark.parametrize("field", ["k", "k_ood", "max_elements"])
@pytest.mark.parametrize("value", [0, -1, 1.5, None])
def test_eval_settings_must_be_positive_integers(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"evaluation {field} must be a positive integer"):
        EvalSettings(**{field: value})


def test_config_errors_are_vaebench_errors() -> None:
    assert issubclass(ConfigError, VaebenchError) and issubclass(ContractError, VaebenchError)


def test_unknown_profile_lists_the_known_ones() -> None:
    suite = Suite("toy", "1", load=lambda options: None)
    assert suite.profile("default").budget == Budget()
    with pytest.raises(
        ConfigError, match="suite 'toy' has no budget profile 'fast'; known: default"
    ):
        suite.profile("fast")


# -- the check functions -------------------------------------------------------------------


def gaussian(batch: tuple[int, ...], event: int) -> Independent:
    return Independent(Normal(torch.zeros(*batch, event), torch.ones(*batch, event)), 1)


def test_check_distribution_accepts_the_promised_distribution() -> None:
    check_distribution(gaussian((B,), M), "encoder 'ok'", (B,), (M,), needs_rsample=True)


def test_check_distribution_rejects_a_tensor() -> None:
    with pytest.raises(ContractError, match=r"encoder 'e' must return a torch.distributions"):
        check_distribution(torch.zeros(B, M), "encoder 'e'", (B,), (M,), needs_rsample=True)


@pytest.mark.parametrize(
    "dist",
    [gaussian((B,), M + 1), gaussian((B, 2), M), Normal(torch.zeros(B, M), torch.ones(B, M))],
    ids=["event", "batch", "not-independent"],
)
def test_check_distribution_rejects_wrong_shapes(dist: Any) -> None:
    with pytest.raises(ContractError, match=r"encoder 'e' returned a distribution.*Independent"):
        check_distribution(dist, "encoder 'e'", (B,), (M,), needs_rsample=True)


def test_check_distribution_rejects_a_distribution_without_rsample() -> None:
    q = Independent(Bernoulli(probs=torch.full((B, M), 0.5)), 1)
    with pytest.raises(ContractError, match="encoder 'e' returned Independent, which cannot"):
        check_distribution(q, "encoder 'e'", (B,), (M,), needs_rsample=True)
    check_distribution(q, "decoder 'd'", (B,), (M,), needs_rsample=False)


def test_check_values() -> None:
    check_values(torch.tensor([0.0, -math.inf]), "prior 'p' log_prob", (2,))
    with pytest.raises(ContractError, match="prior 'p' log_prob must return a tensor"):
        check_values([0.0, 1.0], "prior 'p' log_prob", (2,))
    with pytest.raises(ContractError, match=r"prior 'p' log_prob returned shape \(3,\)"):
        check_values(torch.zeros(3), "prior 'p' log_prob", (2,))
    with pytest.raises(ContractError, match="prior 'p' log_prob returned NaN"):
        check_values(torch.tensor([0.0, math.nan]), "prior 'p' log_prob", (2,))


def test_as_module() -> None:
    module = nn.Linear(1, 1)
    assert as_module(module, "decoder 'd'") is module
    with pytest.raises(ContractError, match="decoder 'd' factory must return a torch.nn.Module"):
        as_module(lambda z: z, "decoder 'd'")


# -- VAE.check on broken components --------------------------------------------------------


class Encoder(nn.Module):
    """A linear Gaussian encoder; ``mode`` breaks it in one way."""

    def __init__(self, mode: str = "ok") -> None:
        super().__init__()
        self.mode = mode
        width = M + 1 if mode == "event" else M
        self.loc = nn.Linear(D, width)

    def forward(self, x: torch.Tensor) -> Any:
        loc = self.loc(x)
        if self.mode == "tensor":
            return loc
        if self.mode == "no-rsample":
            return Independent(Bernoulli(logits=loc), 1)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)


class Decoder(nn.Module):
    def __init__(self, mode: str = "ok") -> None:
        super().__init__()
        self.mode = mode
        self.logits = nn.Linear(M, D)

    def forward(self, z: torch.Tensor) -> Any:
        per_dim = Bernoulli(logits=self.logits(z), validate_args=False)
        return per_dim if self.mode == "unsummed" else Independent(per_dim, 1)


class Prior(StandardNormalPrior):
    def __init__(self, mode: str = "ok") -> None:
        super().__init__(M)
        self.mode = mode

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        if self.mode == "nan":
            return torch.full(z.shape[:-1], math.nan)
        if self.mode == "zero-density":
            return torch.full(z.shape[:-1], -math.inf)
        if self.mode == "unsummed":
            return -0.5 * (z.pow(2) + math.log(2 * math.pi))  # per dimension, not summed
        return super().log_prob(z)

    def sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, M + 1) if self.mode == "sample" else super().sample(n)


NAMES = {"encoder": "bad-enc", "decoder": "bad-dec", "prior": "bad-prior"}


def check(encoder: str = "ok", decoder: str = "ok", prior: str = "ok") -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 2, (B, D)).float()
    VAE(Encoder(encoder), Decoder(decoder), Prior(prior), NAMES).check(x, M)


def test_check_accepts_components_that_keep_their_contracts() -> None:
    check()


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"encoder": "event"}, r"encoder 'bad-enc' returned a distribution .*event_shape \(4,\)"),
        ({"encoder": "tensor"}, "encoder 'bad-enc' must return a torch.distributions.Distribution"),
        ({"encoder": "no-rsample"}, "encoder 'bad-enc' returned Independent, which cannot rsample"),
        ({"decoder": "unsummed"}, r"decoder 'bad-dec' returned .*batch_shape \(2, 5, 6\)"),
        ({"prior": "nan"}, "prior 'bad-prior' log_prob returned NaN"),
        ({"prior": "unsummed"}, r"prior 'bad-prior' log_prob returned shape \(2, 5, 3\)"),
        ({"prior": "sample"}, r"prior 'bad-prior' sample\(3\) returned shape \(3, 4\)"),
        ({"prior": "zero-density"}, "'bad-enc' x decoder 'bad-dec' x prior 'bad-prior' gives non-"),
    ],
    ids=[
        "encoder-event",
        "encoder-tensor",
        "encoder-no-rsample",
        "decoder-unsummed",
        "prior-nan",
        "prior-unsummed",
        "prior-sample",
        "prior-zero-density",
    ],
)
def test_check_names_the_component_that_breaks_its_contract(
    broken: dict[str, str], message: str
) -> None:
    with pytest.raises(ContractError, match=message):
        check(**broken)


def test_check_uses_the_kind_when_no_names_are_given() -> None:
    x = torch.zeros(B, D)
    with pytest.raises(ContractError, match="encoder 'encoder' must return"):
        VAE(Encoder("tensor"), Decoder(), Prior()).check(x, M)
