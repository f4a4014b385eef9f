"""The two-layer model as a whole: it reduces to the one-layer model it contains, its prior is
p(z2) p(z1|z2), the presets build the papers' architectures, option errors say what to change,
and seeds trained together equal seeds trained alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal
from vaebench_hvae.plugin import build_decoder, build_encoder, build_prior

from vaebench.batched import fit_batched
from vaebench.contracts import Budget, BuildContext, DataSpec
from vaebench.errors import ConfigError, ContractError
from vaebench.estimators import likelihood_stats
from vaebench.pipeline import build_model
from vaebench.plugins import default_host
from vaebench.testing import DIGITS_SPEC, tiny_suite_data
from vaebench.train import fit

HVAE = {"encoder": "hvae-encoder", "decoder": "hvae-decoder", "prior": "hvae-prior"}
MNIST = DataSpec(dim=784, levels=2, image_shape=(28, 28))


def hvae(latent: int, hidden: int = 32, seed: int = 0, **options: dict) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(default_host(), HVAE, options, DIGITS_SPEC, latent, hidden)


def test_reduces_to_the_one_layer_model() -> None:
    """With p(z1|z2) made independent of z2 and q(z2|z1) = p(z2) = N(0, I), the log-weights are
    log p(x|z1) + log p(z1) - log q(z1|x): the IW-NLL and ELBO equal those of the one-layer
    model built from vaebench's own MLP encoder and decoder with the same weights and a prior
    N(c, diag s^2) (a one-component ``mog``), under the same noise. With the prior's dependence
    on z2 left in, they differ: the test can tell."""
    model = hvae(latent=6, encoder={"z2": 2})  # z1 = 4, z2 = 2
    one = build_model(
        default_host(),
        {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "mog"},
        {"prior": {"components": 1}},
        DIGITS_SPEC,
        4,
        32,
    )
    enc, dec, pri = model.encoder, model.decoder, model.prior
    # The same networks for q(z1|x) and p(x|z1): the built-ins' Linear layers in order.
    for ours, theirs in ((enc.first, one.encoder.net), (dec.net, one.decoder.net)):
        mine = [ours.hidden[0].h, ours.hidden[1].h, ours.out]
        builtin = [m for m in theirs if isinstance(m, torch.nn.Linear)]
        assert len(builtin) == 3
        for a, b in zip(mine, builtin, strict=True):
            b.load_state_dict(a.state_dict())
    x = tiny_suite_data().test

    def iw(m: torch.nn.Module) -> tuple[float, float]:
        torch.manual_seed(11)
        stats = likelihood_stats(m.eval(), x, 16)
        return float(stats.iw_ll.mean()), float(stats.elbo.mean())

    with torch.no_grad():
        pri.net.out.weight[:4].mul_(20.0)  # p(z1|z2)'s mean depends strongly on z2
        dependent = iw(model)
        enc.second.out.weight.zero_()  # q(z2|z1) = N(0, I)
        enc.second.out.bias.zero_()
        pri.net.out.weight.zero_()  # p(z1|z2) = N(c, diag s^2), c and s from the bias
        pri.net.out.bias.normal_(0.0, 0.5)
        mean, logvar = pri.net.out.bias.chunk(2)
        one.prior.means.copy_(mean.unsqueeze(0))
        one.prior.log_scales.copy_(0.5 * logvar.unsqueeze(0))
    reduced, one_layer = iw(model), iw(one)
    assert reduced[0] == pytest.approx(one_layer[0], rel=1e-6, abs=1e-4)
    assert reduced[1] == pytest.approx(one_layer[1], rel=1e-6, abs=1e-4)
    assert abs(dependent[0] - one_layer[0]) > 1.0


@pytest.mark.parametrize("top", ["standard-normal", "vamp"])
def test_prior_is_the_top_times_the_conditional(top: str) -> None:
    """log p(z) = log p(z2) + log N(z1 | mu(z2), sigma(z2)^2), p(z2) computed independently:
    N(0, I), or the mixture of the encoder's top-path Gaussians at the pseudo-inputs."""
    model = hvae(latent=5, prior={"top": top, "pseudo_inputs": 3})
    prior = model.prior
    z = torch.randn(7, 4, 5)
    z1, z2 = z[..., :3], z[..., 3:]
    if top == "standard-normal":
        log_top = -0.5 * (z2.pow(2) + math.log(2 * math.pi)).sum(-1)
    else:
        u = prior.top.top * torch.sigmoid(prior.top.pseudo_logits)  # [K, D]
        q2 = model.encoder.top(u)  # the path x -> mean of z1 -> q(z2 | z1)
        mu, scale = q2.base_dist.loc, q2.base_dist.scale
        per = torch.stack(
            [torch.distributions.Normal(mu[k], scale[k]).log_prob(z2).sum(-1) for k in range(3)]
        )
        log_top = torch.logsumexp(per, 0) - math.log(3)
    mu1, logvar1 = prior.net(z2).chunk(2, -1)
    log_cond = torch.distributions.Normal(mu1, (0.5 * logvar1).exp()).log_prob(z1).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), log_top + log_cond)


def test_prior_samples_follow_its_density() -> None:
    """E[z1], E[z1 z2] of prior.sample match quadrature of exp(log_prob) on a grid (M = 2)."""
    model = hvae(latent=2).double()
    with torch.no_grad():
        model.prior.net.out.weight[:1].mul_(4.0)
    axis = torch.linspace(-10, 10, 801, dtype=torch.double)
    g1, g2 = torch.meshgrid(axis, axis, indexing="ij")
    z = torch.stack((g1.flatten(), g2.flatten()), -1)
    cell = float(axis[1] - axis[0]) ** 2
    with torch.no_grad():
        density = model.prior.log_prob(z).exp()
        assert float(density.sum() * cell) == pytest.approx(1.0, abs=1e-6)
        torch.manual_seed(4)
        s = model.prior.sample(400_000)
    for f_grid, f_draws in ((z[:, 0], s[:, 0]), (z[:, 0] * z[:, 1], s[:, 0] * s[:, 1])):
        se = float(f_draws.std()) / math.sqrt(f_draws.numel())
        assert abs(float(f_draws.mean()) - float((f_grid * density).sum() * cell)) < 5 * se


def test_decoder_reads_z2_only_in_the_tomczak_form() -> None:
    z = torch.randn(3, 6)
    moved = z.clone()
    moved[:, 3:] += 1.0
    x = tiny_suite_data().test[:3]
    for form, reads_top in (("burda", False), ("tomczak", True)):
        decoder = hvae(latent=6, decoder={"form": form}).decoder
        with torch.no_grad():
            same = torch.equal(decoder(z).log_prob(x), decoder(moved).log_prob(x))
        assert same is not reads_top


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _layer(n_in: int, n_out: int, gated: bool = False) -> int:
    return (2 if gated else 1) * (n_in * n_out + n_out)


def test_burda_preset_is_the_papers_architecture() -> None:
    """Burda et al.'s two-layer MNIST model: 784-200-200-(100) up, 100-100-100-(50) on top,
    50-100-100-(100) and 100-200-200-784 down, tanh, every Gaussian a mean and a log-scale."""
    ctx = BuildContext(MNIST, 150, 256, {"preset": "burda2015"})
    encoder = build_encoder(ctx)
    decoder = build_decoder(BuildContext(MNIST, 150, 256, {}, encoder))
    prior = build_prior(BuildContext(MNIST, 150, 256, {"preset": "burda2015"}, encoder))
    up = _layer(784, 200) + _layer(200, 200) + _layer(200, 2 * 100)
    top = _layer(100, 100) + _layer(100, 100) + _layer(100, 2 * 50)
    assert _parameters(encoder) == up + top
    assert _parameters(prior) == _layer(50, 100) + _layer(100, 100) + _layer(100, 2 * 100)
    # The decoder follows the encoder's split and form, not its widths: widths are its own.
    assert _parameters(decoder) == _layer(100, 256) + _layer(256, 256) + _layer(256, 784)
    decoder = build_decoder(BuildContext(MNIST, 150, 256, {"preset": "burda2015"}, encoder))
    assert _parameters(decoder) == _layer(100, 200) + _layer(200, 200) + _layer(200, 784)
    assert isinstance(encoder.first.hidden[0].h, torch.nn.Linear)
    assert encoder.settings.activation == "tanh"


def test_tomczak_preset_is_the_papers_architecture() -> None:
    """Tomczak & Welling's hvae_2level: gated layers of 300, z1 = z2 = 40, q(z2|x) and
    q(z1|x, z2) with a layer per input and a joint layer, p(x|z1, z2) likewise, and a VampPrior
    of 500 pseudo-inputs over z2; log-variances in [-6, 2]."""
    ctx = BuildContext(MNIST, 80, 256, {"preset": "tomczak2018"})
    encoder = build_encoder(ctx)
    decoder = build_decoder(BuildContext(MNIST, 80, 256, {"preset": "tomczak2018"}, encoder))
    prior = build_prior(BuildContext(MNIST, 80, 256, {"preset": "tomczak2018"}, encoder))
    g = True
    q_z2 = _layer(784, 300, g) + _layer(300, 300, g) + _layer(300, 80)
    q_z1 = _layer(784, 300, g) + _layer(40, 300, g) + _layer(600, 300, g) + _layer(300, 80)
    assert _parameters(encoder) == q_z2 + q_z1
    p_z1 = _layer(40, 300, g) + _layer(300, 300, g) + _layer(300, 80)
    assert _parameters(prior) == p_z1 + 500 * 784
    p_x = _layer(40, 300, g) + _layer(40, 300, g) + _layer(600, 300, g) + _layer(300, 784)
    assert _parameters(decoder) == p_x
    x = torch.zeros(2, 784)
    with torch.no_grad():
        encoder.first.out.bias[40:] = 50.0  # far above the bound: log-variance 2
        assert torch.allclose(encoder(x).first.scale, torch.full((2, 40), math.exp(1.0)))
    # He initialisation: weights of std sqrt(2 / fan_in), e.g. the first layer's over 784 inputs.
    std = float(encoder.first.hidden[0].h.weight.detach().std())
    assert std == pytest.approx(math.sqrt(2 / 784), rel=0.05)
    # The reference code's pseudo-inputs: hard-tanh parameterised, from N(0.05, 0.01).
    vamp = prior.top
    assert vamp.squash == "hardtanh"
    logits = vamp.pseudo_logits.detach()
    assert float(logits.mean()) == pytest.approx(0.05, abs=1e-3)
    assert float(logits.std()) == pytest.approx(0.01, rel=0.05)


def test_pseudo_input_options_override_the_preset_and_are_checked() -> None:
    from vaebench_hvae.settings import PSEUDO_INITS

    from vaebench.components.priors import PSEUDO_INITS as CORE_PSEUDO_INITS

    assert PSEUDO_INITS == CORE_PSEUDO_INITS  # the same names as vaebench's vamp prior
    encoder = build_encoder(BuildContext(MNIST, 80, 64, {"preset": "tomczak2018"}))
    options = {"preset": "tomczak2018", "pseudo_init": "sigmoid", "pseudo_std": 0.0}
    prior = build_prior(BuildContext(MNIST, 80, 64, options, encoder))
    assert prior.top.squash == "sigmoid"
    assert torch.all(prior.top.pseudo_logits == 0.05)  # the preset's mean, no spread
    for bad, message in (({"pseudo_init": "tanh"}, "sigmoid, hardtanh"),
                         ({"pseudo_std": -1.0}, "finite number >= 0.0")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            build_prior(BuildContext(MNIST, 80, 64, {**options, **bad}, encoder))


@pytest.mark.parametrize(
    ("options", "latent", "message"),
    [
        ({"z1": 5, "z2": 5}, 6, "run with --latent-dim 10"),
        ({"preset": "burda2015"}, 16, "run with --latent-dim 150"),
        ({"z2": 20}, 16, "a larger --latent-dim"),
        ({}, 1, "at least 2"),
        ({"preset": "kingma2014"}, 16, "burda2015, tomczak2018"),
        ({"activation": "relu"}, 16, "leaky_relu, tanh, gated"),
        ({"logvar_bounds": [2, -6]}, 16, "low < high"),
        ({"hidden": 0}, 16, "integer >= 1"),
    ],
)
def test_bad_options_say_what_to_change(options: dict, latent: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_encoder(BuildContext(MNIST, latent, 32, options))
    assert "encoder 'hvae-encoder'" in str(info.value)


def test_a_split_that_differs_from_the_encoders_is_refused() -> None:
    encoder = build_encoder(BuildContext(MNIST, 16, 32, {"z2": 4}))
    prior = build_prior(BuildContext(MNIST, 16, 32, {}, encoder))
    assert (prior.settings.z1, prior.settings.z2) == (12, 4)  # unset: the encoder's
    with pytest.raises(ContractError, match="leave this component's z1/z2 unset"):
        build_decoder(BuildContext(MNIST, 16, 32, {"z2": 8}, encoder))


def test_vamp_top_needs_an_encoder_with_a_path_to_z2() -> None:
    class FullCovariance(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> MultivariateNormal:
            return MultivariateNormal(torch.zeros(x.shape[0], 4), torch.eye(4))

    ctx = BuildContext(MNIST, 4, 32, {"top": "vamp"}, FullCovariance())
    with pytest.raises(ContractError, match="--component-option prior.top=standard-normal"):
        build_prior(ctx)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "encoder": {"form": "tomczak", "activation": "gated", "logvar_bounds": [-6, 2]},
            "decoder": {"form": "tomczak"},
            "prior": {"top": "vamp", "pseudo_inputs": 5},
        },
    ],
    ids=["burda", "tomczak-vamp"],
)
@pytest.mark.slow
def test_each_batched_seed_equals_the_seed_alone(options: dict) -> None:
    """Seeds trained as one vectorised model (torch.func.vmap) end as each does alone: same
    validation curve, early stop and parameters (fit_batched raises if it cannot vectorise)."""
    data = tiny_suite_data()
    budget = Budget(steps=12, batch_size=16, lr=0.01, eval_every=4, patience=1)
    seeds = [0, 1]
    alone = []
    for seed in seeds:
        model = hvae(6, seed=seed, **options)
        alone.append((model, fit(model, data, budget, seed)))
    together = [hvae(6, seed=seed, **options) for seed in seeds]
    results = fit_batched(together, data, budget, seeds)
    for (model, a), model_b, b in zip(alone, together, results, strict=True):
        assert (a.steps_done, a.best_step) == (b.steps_done, b.best_step)
        for pa, pb in zip(a.curve, b.curve, strict=True):
            assert pa["val_neg_elbo"] == pytest.approx(pb["val_neg_elbo"], rel=1e-5)
        for p, q in zip(model.parameters(), model_b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
