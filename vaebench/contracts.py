"""What every pluggable part must provide, and the checks that hold a part to it.

A VAE here is three modules built by factories that plugins register:

* an **encoder** maps x of shape ``[B, D]`` to a ``torch.distributions.Distribution`` q(z|x)
  with ``batch_shape == [B]`` and ``event_shape == [M]`` that can ``rsample`` and ``log_prob``;
* a **decoder** maps z of shape ``[..., M]`` to a distribution p(x|z) with ``batch_shape ==
  [...]`` whose ``log_prob(x)`` sums over the data dimensions (event shape ``[D]``);
* a **prior** is a module with ``log_prob(z) -> [...]`` for z of shape ``[..., M]`` and
  ``sample(n) -> [n, M]``; it may have trainable parameters and may use the encoder (VampPrior).

Data is always flat, ``[N, D]`` float32, holding integer levels ``0 .. levels-1`` (binary data
has ``levels == 2``). Image suites say how to fold a vector back into an image
(:attr:`DataSpec.image_shape`). Everything here is plain data apart from the factories, so units
of work can be described without live objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vaebench.errors import ConfigError, ContractError

if TYPE_CHECKING:
    import torch
    from torch import nn

ComponentKind = Literal["encoder", "decoder", "prior"]
COMPONENT_KINDS: tuple[ComponentKind, ...] = ("encoder", "decoder", "prior")


@dataclass(frozen=True)
class DataSpec:
    """The shape and value range of a suite's data, which decides the components that fit."""

    dim: int
    levels: int
    image_shape: tuple[int, ...] | None = None

    @property
    def binary(self) -> bool:
        return self.levels == 2


@dataclass
class BuildContext:
    """Everything a component factory may use to build its module."""

    data: DataSpec
    latent_dim: int
    hidden_dim: int
    options: dict[str, Any] = field(default_factory=dict)
    encoder: Any = None  # the built encoder, handed to prior factories (a VampPrior needs it)


def _always(_: DataSpec) -> bool:
    return True


@dataclass(frozen=True)
class ComponentSpec:
    """A registered encoder, decoder or prior.

    :param name: the stable name used on the command line and in result keys.
    :param kind: ``"encoder"``, ``"decoder"`` or ``"prior"``.
    :param factory: builds the module from a :class:`BuildContext`.
    :param fits: says whether the component can model data of a given :class:`DataSpec`;
        a suite's default grid holds every registered component that fits its data.
    :param options: default options, merged under the user's; part of every result key.
    :param vectorizable: whether seeds of this component may be trained as one vectorised
        model (``torch.func.vmap``); set False for data-dependent control flow or buffers
        updated in place.
    :param default_grid: whether a suite's default grid takes the component when it fits; set
        False for one that costs far more than a default budget allows (an autoregressive
        decoder): it then runs when named (``--decoders pixelcnn``).
    """

    name: str
    kind: ComponentKind
    factory: Callable[[BuildContext], Any]
    description: str = ""
    fits: Callable[[DataSpec], bool] = _always
    options: Mapping[str, Any] = field(default_factory=dict)
    vectorizable: bool = True
    default_grid: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``load(**options)`` returns the dataset's own object."""

    name: str
    load: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class Budget:
    """The training budget, the same for every combination of a run.

    Training stops at ``steps`` gradient steps (or ``epochs`` passes over the training split),
    at ``max_seconds`` of wall time if given, or when validation -ELBO has not improved for
    ``patience`` evaluations (every ``eval_every`` steps). The best checkpoint on validation is
    the one evaluated.

    The optimiser is Adam with ``lr``, ``adam_betas`` and ``adam_eps``. With
    ``normalize_gradients`` each parameter tensor's gradient is divided by its L2 norm before
    the update (the AdamNormGrad of Tomczak & Welling's reference code). ``lr_schedule`` is a
    sequence of ``(epochs, multiplier)`` segments: the first ``epochs`` passes train at
    ``lr * multiplier``, the next segment's at its own multiplier, and so on; past the last
    segment its multiplier holds (Burda et al. 2015: ``((3**i, 10**(-i/7)) for i in 0..7)``).
    """

    steps: int | None = 2000
    epochs: int | None = None
    max_seconds: float | None = None
    batch_size: int = 100
    lr: float = 1e-3
    eval_every: int = 100
    patience: int | None = 10
    checkpoint_every: int | None = None
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    normalize_gradients: bool = False
    lr_schedule: tuple[tuple[int, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            raise ConfigError("a budget needs steps or epochs; give one of them")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("give either steps or epochs, not both")
        for name in ("steps", "epochs", "batch_size", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"budget {name} must be a positive integer, got {value!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience <= 0):
            raise ConfigError(f"budget patience must be a positive integer, got {self.patience!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"budget max_seconds must be > 0, got {self.max_seconds!r}")
        if not (isinstance(self.lr, int | float) and 0 < self.lr < math.inf):
            raise ConfigError(f"budget lr must be a finite number > 0, got {self.lr!r}")
        if not (0 < self.adam_eps < math.inf):
            raise ConfigError(f"budget adam_eps must be a finite number > 0, got {self.adam_eps!r}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(
                f"budget adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}"
            )
        for segment in self.lr_schedule or ():
            if (
                len(segment) != 2
                or not isinstance(segment[0], int)
                or segment[0] <= 0
                or not 0 < segment[1] < math.inf
            ):
                raise ConfigError(
                    "budget lr_schedule must be (epochs, multiplier) pairs with epochs a positive "
                    f"integer and multiplier a finite number > 0, got {segment!r}"
                )

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of the step after ``step`` steps (``lr_schedule`` applied)."""
        if not self.lr_schedule:
            return self.lr
        epoch = step // steps_per_epoch
        for epochs, multiplier in self.lr_schedule:
            if epoch < epochs:
                return self.lr * multiplier
            epoch -= epochs
        return self.lr * self.lr_schedule[-1][1]

    def steps_per_epoch(self, n_train: int) -> int:
        return -(-n_train // min(self.batch_size, n_train))

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        per_epoch = -(-n_train // self.batch_size)
        assert self.epochs is not None  # __post_init__: steps or epochs
        return int(self.epochs) * per_epoch


@dataclass(frozen=True)
class EvalSettings:
    """How a trained model is evaluated.

    :param k: importance samples per test point for the IW-NLL (and the ELBO, estimated from
        the same samples so that IW-NLL <= -ELBO holds for every point).
    :param k_ood: importance samples per point for out-of-distribution sets.
    :param max_elements: memory cap: the largest number of (sample x point x data-dim) floats
        one evaluation chunk may hold.
    :param seed: seed of the evaluation noise, so that evaluations are reproducible.
    """

    k: int = 1000
    k_ood: int = 100
    max_elements: int = 2**25
    seed: int = 1234

    def __post_init__(self) -> None:
        for name in ("k", "k_ood", "max_elements"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"evaluation {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Profile:
    """A named set-up of a suite (``default``, ``paper``, a paper's own...): a budget and
    evaluation settings, and optionally the model's sizes, the grid and the options of its
    components and objectives. Explicit requests (command-line flags, API arguments) override
    every field; all of it goes into each result's key.

    :param latent_dim: latent size (else the suite's).
    :param hidden_dim: hidden width of the built-in MLPs (else the suite's).
    :param grid: the encoders, decoders, priors and objectives to run (else the suite's grid).
    :param options: options by component or objective *name*, merged over its defaults; a
        tuple of mappings runs one variant per mapping (``{"iwae": ({"k": 5}, {"k": 50})}``).
    :param reference: where the set-up comes from, for the record and the README.
    """

    budget: Budget
    eval: EvalSettings
    description: str = ""
    latent_dim: int | None = None
    hidden_dim: int | None = None
    grid: Grid | None = None
    options: Mapping[str, Mapping[str, Any] | tuple[Mapping[str, Any], ...]] = field(
        default_factory=dict
    )
    reference: str = ""


@dataclass
class SuiteData:
    """A suite's loaded data: float32 tensors ``[N, D]`` of integer levels.

    ``train_transform(batch, generator)`` is applied to every training batch when drawn (for
    example dynamic binarization of grey levels); validation, test and OOD sets are fixed.
    ``provenance`` says where the data came from and how it was processed; it goes into records.
    """

    spec: DataSpec
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    ood: dict[str, torch.Tensor] = field(default_factory=dict)
    train_transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """Component names to combine; ``None`` means every registered component that fits,
    limited to the components of ``plugins`` when that is given (``("vaebench",)``: the
    built-ins only, so that installing a plugin does not change a suite's default grid).

    ``objectives`` are the training objectives (``None``: the baseline's alone). ``baseline``
    names the suite's reference combination by kind (``{"prior": "standard-normal"}``); the
    default grid varies one factor at a time around it (a kind it does not name takes its first
    candidate).
    """

    encoders: tuple[str, ...] | None = None
    decoders: tuple[str, ...] | None = None
    priors: tuple[str, ...] | None = None
    plugins: tuple[str, ...] | None = None
    objectives: tuple[str, ...] | None = None
    baseline: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A benchmark: data, model sizes, profiles (budgets + evaluation), grid, seeds, metrics.

    ``load(options)`` returns :class:`SuiteData`; ``options`` holds the suite's ``options``
    updated by the user's (for example ``data_dir``, ``binarization``); a given option must have
    the type of its default, or ``option_types[name]`` where the default is None. ``version``
    goes into every result and its key: change it whenever the numbers a suite produces could
    change.
    """

    name: str
    version: str
    # load(options) or load(options, datasets): see vaebench.pipeline.load_suite_data
    load: Callable[..., SuiteData]
    description: str = ""
    latent_dim: int = 16
    hidden_dim: int = 256
    profiles: Mapping[str, Profile] = field(default_factory=lambda: {"default": _DEFAULT_PROFILE})
    grid: Grid = Grid()
    seeds: tuple[int, ...] = (0, 1)
    metrics: tuple[str, ...] = ("likelihood",)
    options: Mapping[str, Any] = field(default_factory=dict)
    option_types: Mapping[str, type] = field(default_factory=dict)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise ConfigError(f"suite {self.name!r} has no budget profile {name!r}; known: {known}")
        return self.profiles[name]


_DEFAULT_PROFILE: Profile = Profile(Budget(), EvalSettings())


@dataclass(frozen=True)
class MetricValue:
    """One number a metric reports, with what a table needs to show it."""

    value: float
    unit: str = ""
    higher_is_better: bool | None = None
    stderr: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": float(self.value),
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
        }
        if self.stderr is not None:
            out["stderr"] = float(self.stderr)
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    ``compute(ctx)`` receives a :class:`vaebench.evaluate.EvalContext` and returns a mapping
    from output names (conventionally prefixed by the metric's own name, e.g.
    ``"collapse/active_units"``) to :class:`MetricValue`. ``unit`` and ``higher_is_better``
    describe the headline output for listings; each value carries its own. ``needs`` names what
    the metric uses (``"iw"``, ``"ood"``, ``"train"`` ...), ``aggregate`` how seeds combine.

    Where tables show the outputs (:mod:`vaebench.tables.sections`): ``section`` is one of
    ``"likelihood"``, ``"collapse"`` (collapse and holes), ``"ood"`` or ``"other"``;
    ``columns`` lists the outputs its table shows, in order, as names or shell-style patterns
    (empty: every output named ``<name>/...``; outputs not listed go to "other"); ``headline``
    is the output (or pattern) the section is ranked by; ``table_per`` splits the outputs into
    one table per value of the ``/``-separated name part at that index (the ``ood`` metric's 1:
    a table per score).
    """

    name: str
    compute: Callable[[Any], Mapping[str, MetricValue]]
    description: str = ""
    unit: str = ""
    higher_is_better: bool | None = None
    needs: frozenset[str] = frozenset()
    aggregate: Literal["mean", "median"] = "mean"
    section: str = "other"
    columns: tuple[str, ...] = ()
    headline: str | None = None
    table_per: int | None = None


@dataclass(frozen=True)
class ExecutorSpec:
    """A registered executor: ``factory(**options)`` returns an object with
    ``map(units, fn) -> iterator of (unit, result-or-exception)``."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class Progress:
    """Where training stands when a loss is computed: ``step`` optimisation steps taken before
    this one, of ``steps_per_epoch`` per pass over the training split."""

    step: int
    steps_per_epoch: int

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered training objective.

    ``factory(options)`` returns an object with ``samples`` (importance samples per data point,
    an int) and ``loss(terms, progress) -> scalar tensor``, where ``terms`` is what
    :meth:`vaebench.model.VAE.log_weights` gives for a batch with ``samples`` draws (``log_px_z``,
    ``log_pz`` and ``log_qz``, each ``[samples, B]``) and ``progress`` a :class:`Progress`. The
    same code runs for a seed trained alone and for seeds trained together under
    ``torch.func.vmap``: plain tensor arithmetic, no in-place updates, no data-dependent Python
    branches. Validation and early stopping measure the plain -ELBO whatever the objective.

    :param options: default options (every option the objective accepts), merged under the
        user's; part of every result key.
    """

    name: str
    factory: Callable[[Mapping[str, Any]], Any]
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    kind: Literal["objective"] = "objective"


# ---------------------------------------------------------------------------------------------
# Checks that hold components to their contracts. They run once per model on a small batch
# (see vaebench.model.VAE.check), not on the training hot path.


def _describe(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return f"{type(obj).__name__} of shape {tuple(shape)}"
    return type(obj).__name__


def check_distribution(
    dist: Any,
    who: str,
    batch_shape: Sequence[int],
    event_shape: Sequence[int],
    *,
    needs_rsample: bool,
) -> None:
    """Raise :class:`ContractError` naming ``who`` if ``dist`` is not the promised distribution."""
    import torch

    if not isinstance(dist, torch.distributions.Distribution):
        raise ContractError(
            f"{who} must return a torch.distributions.Distribution, but returned {_describe(dist)}"
        )
    if tuple(dist.batch_shape) != tuple(batch_shape) or tuple(dist.event_shape) != tuple(
        event_shape
    ):
        raise ContractError(
            f"{who} returned a distribution with batch_shape {tuple(dist.batch_shape)} and "
            f"event_shape {tuple(dist.event_shape)}; expected batch_shape {tuple(batch_shape)} "
            f"and event_shape {tuple(event_shape)} (wrap per-dimension distributions in "
            "torch.distributions.Independent(..., 1))"
        )
    if needs_rsample and not dist.has_rsample:
        raise ContractError(
            f"{who} returned {type(dist).__name__}, which cannot rsample; an encoder's q(z|x) "
            "must be reparameterisable"
        )


def check_values(values: Any, who: str, shape: Sequence[int]) -> None:
    """Raise :class:`ContractError` unless ``values`` is a tensor of ``shape`` with no NaN."""
    import torch

    if not isinstance(values, torch.Tensor):
        raise ContractError(f"{who} must return a tensor, but returned {_describe(values)}")
    if tuple(values.shape) != tuple(shape):
        raise ContractError(f"{who} returned shape {tuple(values.shape)}; expected {tuple(shape)}")
    if torch.isnan(values).any():
        raise ContractError(f"{who} returned NaN values")


def as_module(obj: Any, who: str) -> nn.Module:
    from torch import nn

    if not isinstance(obj, nn.Module):
        raise ContractError(f"{who} factory must return a torch.nn.Module, got {_describe(obj)}")
    return obj
