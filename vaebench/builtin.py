"""vaebench's own plugin: built-in components, suites and metrics, registered through the same
hooks as any third-party plugin."""

from __future__ import annotations

from vaebench.contracts import ComponentSpec, DatasetSpec, DataSpec
from vaebench.hookspecs import Register, hookimpl


def _categorical_fits(data: DataSpec) -> bool:
    return 2 < data.levels <= 256


def _binary(data: DataSpec) -> bool:
    return data.binary


@hookimpl(trylast=True)
def vaebench_register_encoders(register: Register) -> None:
    from vaebench.components import mlp

    register(
        ComponentSpec(
            "mlp-gaussian",
            "encoder",
            mlp.build_gaussian_encoder,
            "MLP (2 hidden layers, LeakyReLU; gated, tanh, He init and log-variance bounds as "
            "options) to a diagonal Gaussian q(z|x)",
            options=mlp.ENCODER_OPTIONS,
        )
    )


@hookimpl(trylast=True)
def vaebench_register_decoders(register: Register) -> None:
    from vaebench.components import mlp

    register(
        ComponentSpec(
            "mlp-bernoulli",
            "decoder",
            mlp.build_bernoulli_decoder,
            "MLP to independent Bernoulli pixels (binary data)",
            fits=_binary,
            options=mlp.MLP_OPTIONS,
        )
    )
    register(
        ComponentSpec(
            "mlp-categorical",
            "decoder",
            mlp.build_categorical_decoder,
            "MLP to an independent categorical over the data's L levels per pixel",
            fits=_categorical_fits,
            options=mlp.MLP_OPTIONS,
        )
    )
    from vaebench.components import logistic

    register(
        ComponentSpec(
            "mlp-logistic-mixture",
            "decoder",
            logistic.build_mlp_decoder,
            "MLP to a discretized logistic mixture per pixel and channel (8-bit data; Salimans "
            "et al. 2017)",
            fits=lambda data: data.levels == 256,
            options=logistic.MIXTURE_OPTIONS,
        )
    )


@hookimpl(trylast=True)
def vaebench_register_priors(register: Register) -> None:
    from vaebench.components import priors

    register(ComponentSpec("standard-normal", "prior", priors.build_standard_normal, "N(0, I)"))
    register(
        ComponentSpec(
            "mog",
            "prior",
            priors.build_mixture,
            "trainable mixture of diagonal Gaussians",
            options={"components": 10},
        )
    )
    register(
        ComponentSpec(
            "vamp",
            "prior",
            priors.build_vamp,
            "VampPrior: mixture of the encoder's posteriors at learned pseudo-inputs",
            options=priors.VAMP_OPTIONS,
        )
    )


@hookimpl(trylast=True)
def vaebench_register_datasets(register: Register) -> None:
    from functools import partial

    from vaebench.data.mnist import load_mnist_family
    from vaebench.suites.digits import digits_tensor

    register(
        DatasetSpec(
            "mnist",
            partial(load_mnist_family, "mnist"),
            "MNIST, 60k+10k 28x28 uint8 (IDX files; downloaded and checksummed when missing)",
        )
    )
    register(
        DatasetSpec(
            "fashion-mnist",
            partial(load_mnist_family, "fashion-mnist"),
            "Fashion-MNIST, 60k+10k 28x28 uint8 (IDX files; also found in /usr/share/datasets)",
        )
    )
    register(
        DatasetSpec(
            "digits",
            lambda **_: digits_tensor(),
            "scikit-learn's 8x8 digits, 1797 x 64 with levels 0..16 (embedded)",
        )
    )
    from vaebench.data.caltech import load_caltech_silhouettes
    from vaebench.data.cifar10 import load_cifar10
    from vaebench.data.omniglot import load_omniglot
    from vaebench.data.svhn import load_svhn

    register(
        DatasetSpec(
            "cifar10",
            load_cifar10,
            "CIFAR-10, 50k+10k 32x32x3 uint8 (the official binary archive; md5 checked)",
        )
    )
    register(
        DatasetSpec(
            "svhn",
            load_svhn,
            "SVHN cropped digits, 73,257+26,032 (+531,131 extra) 32x32x3 uint8 (.mat; md5 checked)",
        )
    )
    register(
        DatasetSpec(
            "omniglot",
            load_omniglot,
            "Omniglot 28x28 of Burda et al. 2015, 24,345+8,070 grey in [0, 1] (chardata.mat)",
        )
    )
    register(
        DatasetSpec(
            "caltech101-silhouettes",
            load_caltech_silhouettes,
            "Caltech-101 Silhouettes 28x28 binary, split 1: 4,100/2,264/2,307 (.mat)",
        )
    )


@hookimpl(trylast=True)
def vaebench_register_suites(register: Register) -> None:
    from vaebench.suites import digits, mnist

    register(digits.SUITE)
    register(mnist.MNIST)
    register(mnist.FASHION_MNIST)
    from vaebench.suites import caltech, colour, omniglot

    register(colour.CIFAR10)
    register(colour.SVHN)
    register(omniglot.OMNIGLOT)
    register(caltech.CALTECH)


@hookimpl(trylast=True)
def vaebench_register_metrics(register: Register) -> None:
    from vaebench.metrics import collapse, holes, likelihood, ood

    register(likelihood.LIKELIHOOD)
    register(collapse.COLLAPSE)
    register(holes.HOLES)
    register(ood.OOD)


@hookimpl(trylast=True)
def vaebench_register_executors(register: Register) -> None:
    from vaebench.executors import local, process, ray

    register(local.SPEC)
    register(process.SPEC)
    register(ray.SPEC)  # registered always: using it without Ray installed says how to add it


@hookimpl(trylast=True)
def vaebench_register_objectives(register: Register) -> None:
    from vaebench import objectives

    register(objectives.ELBO)
    register(objectives.IWAE)
    register(objectives.BETA)
