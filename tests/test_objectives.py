"""The training objectives against their known answers, and each trained batched as alone."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_batched import assert_same_training
from vaebench import plugins, streams
from vaebench.batched import fit_batched
from vaebench.contracts import Budget, Progress
from vaebench.errors import ConfigError
from vaebench.objectives import BETA, ELBO, IWAE
from vaebench.pipeline import build_model, load_suite_data
from vaebench.train import TrainResult, fit, fixed_noise, normal_noise_from

pytestmark = pytest.mark.usefixtures("one_thread")
COMBO = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "standard-normal"}


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_suite_data(plugins.default_host().get("suite", "digits"), {"limit": 200})


def small_model(data, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return build_model(plugins.default_host(), COMBO, {}, data.spec, 4, 32)


def make(spec, **options):  # type: ignore[no-untyped-def]
    return spec.factory({**spec.options, **options})


def loss_and_grads(model, objective, x, progress):  # type: ignore[no-untyped-def]
    model.zero_grad()
    with normal_noise_from(fixed_noise(7, "cpu")):
        loss = objective.loss(model.log_weights(x, objective.samples), progress)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def fixed_terms(model, x, k: int = 1):  # type: ignore[no-untyped-def]
    """``model.log_weights(x, k)`` without gradients, on the noise every test here shares."""
    with torch.no_grad(), normal_noise_from(fixed_noise(7, "cpu")):
        return model.log_weights(x, k)


def plain_neg_elbo(model, x):  # type: ignore[no-untyped-def]
    return -fixed_terms(model, x).log_w.mean()


def test_iwae_with_one_sample_is_the_elbo_in_loss_and_gradients(data) -> None:  # type: ignore[no-untyped-def]
    model, x, at = small_model(data), data.train[:32], Progress(3, 10)
    elbo_loss, elbo_grads = loss_and_grads(model, make(ELBO), x, at)
    iwae_loss, iwae_grads = loss_and_grads(model, make(IWAE, k=1), x, at)
    torch.testing.assert_close(iwae_loss, elbo_loss)
    for a, b in zip(iwae_grads, elbo_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.isclose(elbo_loss, plain_neg_elbo(model, x))


def test_iwae_is_the_log_mean_exp_of_its_weights(data) -> None:  # type: ignore[no-untyped-def]
    model, x = small_model(data), data.train[:16]
    objective = make(IWAE, k=7)
    loss = objective.loss(fixed_terms(model, x, 7), Progress(0, 1))
    log_w = fixed_terms(model, x, 7).log_w.double()
    by_hand = -(log_w.exp().mean(0).log()).mean()  # exact in float64 at these magnitudes
    assert math.isclose(float(loss), float(by_hand), rel_tol=1e-5)
    assert float(loss) < float(-log_w.mean())  # a strictly tighter bound than the ELBO here


def test_beta_one_is_the_elbo_and_beta_weights_the_kl(data) -> None:  # type: ignore[no-untyped-def]
    model, x, at = small_model(data), data.train[:32], Progress(0, 10)
    elbo_loss, elbo_grads = loss_and_grads(model, make(ELBO), x, at)
    beta_loss, beta_grads = loss_and_grads(model, make(BETA, beta=1.0), x, at)
    torch.testing.assert_close(beta_loss, elbo_loss)
    for a, b in zip(beta_grads, elbo_grads, strict=True):
        torch.testing.assert_close(a, b)
    terms = fixed_terms(model, x)
    recon = -terms.log_px_z.mean()
    kl = (terms.log_qz - terms.log_pz).mean()
    loss3 = make(BETA, beta=3.0).loss(fixed_terms(model, x), at)
    torch.testing.assert_close(loss3, recon + 3.0 * kl)


def test_warm_up_starts_at_zero_rises_linearly_and_ends_at_the_elbo(data) -> None:  # type: ignore[no-untyped-def]
    model, x = small_model(data), data.train[:32]
    objective = make(ELBO, warmup_epochs=2)
    assert objective.kl_weight(Progress(0, 10)) == 0.0
    assert objective.kl_weight(Progress(5, 10)) == 0.25
    assert objective.kl_weight(Progress(20, 10)) == 1.0
    assert make(ELBO, warmup_steps=4).kl_weight(Progress(1, 10)) == 0.25
    terms = fixed_terms(model, x)
    at_start = objective.loss(fixed_terms(model, x), Progress(0, 10))
    torch.testing.assert_close(at_start, -terms.log_px_z.mean())  # the KL term weighs nothing
    after = objective.loss(fixed_terms(model, x), Progress(20, 10))
    torch.testing.assert_close(after, plain_neg_elbo(model, x))


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        (IWAE, {"k": 0}, "option k must be a whole number >= 1"),
        (IWAE, {"k": 2.5}, "option k must be a whole number >= 1"),
        (BETA, {"beta": -1.0}, "option beta must be a finite number >= 0"),
        (ELBO, {"warmup_epochs": 3, "warmup_steps": 10}, "not both"),
    ],
)
def test_bad_objective_options_are_one_line_errors(spec, options, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        make(spec, **options)


@pytest.mark.parametrize(
    "objective",
    [
        pytest.param(make(ELBO, warmup_steps=15), id="elbo-warmup"),
        pytest.param(make(IWAE, k=4), id="iwae-k4"),
        pytest.param(make(BETA, beta=2.0), id="beta-2"),
    ],
)
@pytest.mark.slow
def test_every_objective_trains_batched_with_the_numbers_it_gets_alone(objective, data) -> None:  # type: ignore[no-untyped-def]
    budget = Budget(steps=30, batch_size=50, lr=0.01, eval_every=5, patience=2)
    seeds = [0, 1]
    alone = []
    for seed in seeds:
        model = small_model(data, streams.derive(seed, streams.INIT))
        alone.append((model, fit(model, data, budget, seed, objective=objective)))
    together = [small_model(data, streams.derive(s, streams.INIT)) for s in seeds]
    batched = fit_batched(together, data, budget, seeds, objective=objective)
    for (model, result), model_b, result_b in zip(alone, together, batched, strict=True):
        assert isinstance(result_b, TrainResult)
        assert_same_training(result, result_b)
        for p, q in zip(model.parameters(), model_b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_the_objective_changes_training_but_validation_stays_the_plain_elbo(data) -> None:  # type: ignore[no-untyped-def]
    budget = Budget(steps=10, batch_size=50, lr=0.01, eval_every=5, patience=None)
    plain, heavy = small_model(data), small_model(data)
    a = fit(plain, data, budget, 0)
    b = fit(heavy, data, budget, 0, objective=make(BETA, beta=50.0))
    # Same first step's loss would mean the objective was ignored; the validation curve of
    # each is its model's plain -ELBO, so the heavily KL-weighted model's reconstruction
    # suffers and its validation -ELBO is not its training loss.
    assert a.curve[0]["train_loss"] != pytest.approx(b.curve[0]["train_loss"], rel=1e-3)
    assert b.curve[-1]["train_loss"] != pytest.approx(b.curve[-1]["val_neg_elbo"], rel=1e-2)
