"""One random stream per purpose: a seed's initialisation, noise, data order and binarizations
are independent of one another, and of the fixed splits' binarizations."""

from __future__ import annotations

import math

import torch

from vaebench import streams
from vaebench.components.mlp import GaussianMLPEncoder
from vaebench.data import static_binarize
from vaebench.train import NoiseStream

N = 20_000  # values compared per pair: chance correlations are about 1 / sqrt(N) = 0.007
CHANCE = 4 / math.sqrt(N)
GREY = torch.full((N // 784 + 1, 784), 0.5)  # a grey split: its bits show the uniforms drawn


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten()[:N].double(), b.flatten()[:N].double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def first_layer(init_seed: int) -> torch.Tensor:
    torch.manual_seed(init_seed)
    encoder = GaussianMLPEncoder(784, 2, 256, 16)
    return encoder.net[0].weight.detach()


def test_the_shared_generator_of_before_couples_init_and_binarization() -> None:
    """The statistic the next tests use sees the coupling one seed integer made: weights
    initialised under seed s against a split binarized from the same s."""
    weights = first_layer(1)
    bits = static_binarize(GREY, 1)
    assert abs(correlation(weights, bits)) > 10 * CHANCE


def test_initialisation_is_independent_of_every_split_binarization() -> None:
    for seed in (0, 1, 2):
        weights = first_layer(streams.derive(seed, streams.INIT))
        for split in ("val", "test", "train", "ood/noise"):
            for binarization_seed in (0, 1, 2):
                bits = static_binarize(GREY, streams.split_binarization(binarization_seed, split))
                r = correlation(weights, bits)
                assert abs(r) < CHANCE, (seed, split, binarization_seed, r)


def test_noise_order_and_training_binarization_are_independent_of_initialisation() -> None:
    for seed in (0, 1, 2):
        weights = first_layer(streams.derive(seed, streams.INIT))
        noise = NoiseStream(streams.derive(seed, streams.NOISE), torch.device("cpu"))
        block = noise.fresh_block((N,))[0]
        order = torch.randperm(N, generator=streams.generator(seed, streams.ORDER)).float()
        bits = torch.bernoulli(
            torch.full((N,), 0.5), generator=streams.generator(seed, streams.TRAIN_BINARIZATION)
        )
        for name, values in (("noise", block), ("order", order), ("binarization", bits)):
            assert abs(correlation(weights, values)) < CHANCE, (seed, name)
        assert abs(correlation(block, bits)) < CHANCE, seed


def test_derived_seeds_differ_by_seed_and_purpose_and_are_stable() -> None:
    purposes = (streams.INIT, streams.NOISE, streams.ORDER, streams.TRAIN_BINARIZATION)
    derived = {(s, p): streams.derive(s, p) for s in range(5) for p in purposes}
    assert len(set(derived.values())) == len(derived)
    assert all(0 <= v < 2**63 for v in derived.values())
    # A fixed function of (seed, purpose): the same value in every process and version.
    assert (
        streams.derive(0, "init")
        == int.from_bytes(__import__("hashlib").sha256(b"0/init").digest()[:8], "big") >> 1
    )
