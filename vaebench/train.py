"""The budgeted training loop, written once for one seed or many. It knows the objective and
nothing of executors or outputs.

:class:`TrainingLoop` holds what every seed carries (:class:`SeedState`: data order, best-so-far,
patience, curve) and one *width* takes the steps: :class:`SingleWidth`, one plain model, or
:class:`vaebench.batched.StackedWidth`, S seeds stacked under ``torch.func.vmap``. Data sits in
memory as one tensor; each seed draws its batches with a permutation from its own order stream
and transforms them (dynamic binarization) from its own transform stream
(:mod:`vaebench.streams`). The loss is the objective's (:mod:`vaebench.objectives`); validation
-ELBO (one sample per point, fixed noise, weight 1 whatever the objective) is measured every
``eval_every`` steps; the best state on validation is kept and restored at the end. A checkpoint
(models, optimizer, streams, step, every seed's state) is written every ``checkpoint_every``
steps, so a killed run continues where it stopped and ends with the same numbers as an
uninterrupted one.

Reparameterisation noise does not come from the global RNG: every seed draws it from its own
:class:`NoiseStream`, which :func:`normal_noise_from` plugs into ``torch.distributions``. A seed
trained alone and the same seed trained in a vectorised batch thus see the same noise, draw for
draw.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch.distributions import (
    lowrank_multivariate_normal,
    multivariate_normal,
    normal,
    studentT,
    utils,
)

from vaebench import interrupts, streams
from vaebench.contracts import Budget, Progress, SuiteData
from vaebench.environment import segment
from vaebench.errors import TrainingError
from vaebench.model import VAE

VAL_NOISE_SEED = streams.derive(0, streams.VALIDATION_NOISE)
VAL_CHUNK = 1000  # validation points per pass
NOISE_BLOCK = 64  # draws of one shape fetched from a seed's generator at once

NoiseSource = Callable[[Sequence[int], torch.dtype, Any], torch.Tensor]

# Every torch.distributions module that draws its reparameterisation noise through
# ``utils._standard_normal`` (torch 2.x); each holds its own reference, so each is patched.
# Typed Any: _standard_normal is private, not in the modules' type information.
_NOISE_MODULES: tuple[Any, ...] = (
    utils,
    normal,
    multivariate_normal,
    lowrank_multivariate_normal,
    studentT,
)


@contextlib.contextmanager
def normal_noise_from(source: NoiseSource) -> Iterator[None]:
    """Within the block, ``rsample`` of Normal (and of the other Gaussian distributions) takes
    its standard-normal noise from ``source(shape, dtype, device)``."""
    saved = [(m, m._standard_normal) for m in _NOISE_MODULES if hasattr(m, "_standard_normal")]
    for module, _ in saved:
        module._standard_normal = source
    try:
        yield
    finally:
        for module, original in saved:
            module._standard_normal = original


class NoiseStream:
    """One seed's standard-normal noise, from its own generator, fetched ``block`` draws of a
    shape at a time (float32, cast on hand-out) so that many seeds cost few kernel launches."""

    def __init__(self, seed: int, device: torch.device, block: int = NOISE_BLOCK) -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.block = block
        self._blocks: dict[tuple[int, ...], list[Any]] = {}  # shape -> [block tensor, next row]

    def fresh_block(self, shape: Sequence[int]) -> torch.Tensor:
        """The next ``[block, *shape]`` draws of this seed's generator."""
        out = torch.empty((self.block, *shape), dtype=torch.float32, device=self.device)
        return out.normal_(generator=self.generator)

    def __call__(self, shape: Sequence[int], dtype: torch.dtype, device: Any) -> torch.Tensor:
        key = tuple(int(s) for s in shape)
        held = self._blocks.get(key)
        if held is None or held[1] == self.block:
            held = self._blocks[key] = [self.fresh_block(key), 0]
        row = held[0][held[1]]
        held[1] += 1
        return row.to(dtype=dtype or torch.float32)

    def state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "blocks": [(list(k), v[0], v[1]) for k, v in self._blocks.items()],
        }

    def load_state(self, state: dict[str, Any], fresh_seed: int | None = None) -> None:
        """Back to :meth:`state`; with ``fresh_seed`` (a checkpoint of another kind of device)
        the generator starts afresh from that seed and the drawn blocks are dropped."""
        if fresh_seed is not None:
            self.generator.manual_seed(fresh_seed)
            self._blocks = {}
            return
        self.generator.set_state(state["generator"].cpu())
        self._blocks = {tuple(k): [t.to(self.device), i] for k, t, i in state["blocks"]}


def fixed_noise(seed: int, device: Any) -> NoiseSource:
    """A noise source drawing afresh from a generator seeded with ``seed`` (evaluation noise
    that every seed of a combination shares)."""
    generator = torch.Generator(device=torch.device(device)).manual_seed(seed)

    def draw(shape: Sequence[int], dtype: torch.dtype, device: Any) -> torch.Tensor:
        out = torch.empty(tuple(shape), dtype=torch.float32, device=generator.device)
        return out.normal_(generator=generator).to(dtype=dtype or torch.float32)

    return draw


@dataclass
class TrainResult:
    steps_done: int
    best_step: int
    best_val: float
    stopped_early: bool
    cap_hit: bool
    seconds: float
    curve: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps_done": self.steps_done,
            "best_step": self.best_step,
            "best_val_neg_elbo": self.best_val,
            "stopped_early": self.stopped_early,
            "cap_hit": self.cap_hit,
            "seconds": self.seconds,
            "curve": self.curve,
            "resumed_from": self.resumed_from,
            "segments": self.segments,
        }


@torch.no_grad()
def validation_neg_elbo(model: VAE, x: torch.Tensor, batch: int = VAL_CHUNK) -> float:
    """-ELBO on ``x`` with one sample per point and fixed noise (comparable across steps)."""
    was_training = model.training
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    total = 0.0
    with (
        torch.random.fork_rng(devices=devices),
        normal_noise_from(fixed_noise(VAL_NOISE_SEED, x.device)),
    ):
        torch.manual_seed(VAL_NOISE_SEED)  # for any other random op of a component
        for start in range(0, x.shape[0], batch):
            total += float(model.log_weights(x[start : start + batch], 1).log_w.sum())
    model.train(was_training)
    return -total / x.shape[0]


# Devices with torch's fused (one kernel per step) Adam. On a CPU it takes the optimizer from
# about a quarter of a small model's training step to a tenth (benchmarks/README.md); the update
# is the same arithmetic, so results agree with the unfused Adam to rounding.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_adam(
    params: list[torch.Tensor],
    lr: float,
    device: Any,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Adam:
    """Adam over ``params``, fused where the device has the fused kernel."""
    kind = torch.device(device).type if device is not None else "cpu"
    fused = kind in FUSED_ADAM_DEVICES and all(p.is_floating_point() for p in params)
    pair = cast(tuple[float, float], tuple(betas))  # Budget checks there are two
    return torch.optim.Adam(params, lr=lr, betas=pair, eps=eps, fused=fused or None)


def save_payload(path: Path, payload: dict[str, Any], write: Callable[[Path, bytes], None]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write(path, buffer.getvalue())


CHECKPOINT_FIELDS = ("seeds", "width", "states", "step", "elapsed", "running")


def load_checkpoint(path: Path | None, kind: str) -> dict[str, Any] | None:
    """A checkpoint's payload (on the CPU) if ``path`` holds one of this ``kind`` (the width's
    name), else None; an unreadable one is set aside with a warning
    (:mod:`vaebench.checkpoints`) and training starts from scratch."""
    from vaebench.checkpoints import read_checkpoint

    return read_checkpoint(path, kind, required=CHECKPOINT_FIELDS)


@dataclass
class SeedState:
    """What one seed carries between steps, whichever width trains it: its data order and
    cursor, its best-so-far and patience, its curve and how it ended."""

    seed: int
    perm: torch.Tensor
    cursor: int = 0
    best_val: float = math.inf
    best_step: int = 0
    bad: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    since: int = 0
    stopped_early: bool = False
    cap_hit: bool = False
    error: str | None = None
    steps_done: int = 0
    seconds: float = 0.0

    @property
    def active(self) -> bool:
        return not self.stopped_early and self.error is None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Width(Protocol):
    """How S seeds' models take a step: one plain model (S = 1) or S stacked under ``vmap``.

    The loop (:class:`TrainingLoop`) owns everything else: data, schedules, validation, early
    stopping, checkpoints.
    """

    kind: str

    def losses(self, x: torch.Tensor, progress: Progress) -> torch.Tensor:
        """Each seed's training loss ``[S]`` for its batch ``x[s]``, with the graph."""

    def step(self, total: torch.Tensor, active: torch.Tensor, lr: float) -> None:
        """Backpropagate ``total`` and update every active seed's parameters at ``lr``."""

    def validate(self) -> list[float]:
        """Every seed's validation -ELBO, as :func:`validation_neg_elbo` computes it."""

    def snapshot(self, index: int) -> dict[str, torch.Tensor]:
        """A copy of seed ``index``'s parameters and buffers."""

    def load_best(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        """Put each seed's ``states[i]`` into its model."""

    def payload(self) -> dict[str, Any]:
        """Model, optimizer and noise state for a checkpoint."""

    def restore(self, saved: dict[str, Any], moved_at: int | None = None) -> None:
        """Back to what :meth:`payload` saved (CPU tensors). With ``moved_at``, the checkpoint
        was written on another kind of device: the noise streams start afresh from
        ``streams.moved(seed, streams.NOISE, moved_at)``."""


def normalize_gradients(grads: Sequence[torch.Tensor], seed_dims: int = 0) -> None:
    """Divide each gradient by its L2 norm (plus 1e-7) in place; with ``seed_dims = 1`` the
    norm is taken per seed over a stacked tensor's slices ``grad[s]``."""
    for grad in grads:
        if seed_dims:
            norms = grad.flatten(1).norm(dim=1).reshape(-1, *([1] * (grad.dim() - 1)))
        else:
            norms = grad.norm()
        grad.div_(norms + 1e-7)


class TrainingLoop:
    """The budgeted loop, written once for every width.

    Each seed draws its batches from its own order stream and, where the suite transforms
    training batches (dynamic binarization), from its own transform stream; its validation
    curve, early stopping and best state are its own. The loss comes from the objective; the
    learning rate from the budget's schedule.
    """

    def __init__(
        self,
        width: Width,
        data: SuiteData,
        budget: Budget,
        seeds: Sequence[int],
        objective: Any,
        device: torch.device,
        precision: str,
    ) -> None:
        self.width, self.data, self.budget, self.seeds = width, data, budget, list(seeds)
        self.objective, self.device = objective, device
        self.train = data.train.to(device)
        self.val = data.val.to(device)
        n = self.train.shape[0]
        self.batch = min(budget.batch_size, n)
        self.steps_per_epoch = budget.steps_per_epoch(n)
        self.total_steps = budget.total_steps(n)
        self.autocast = precision == "bf16"
        self.order_gens = [streams.generator(s, streams.ORDER) for s in seeds]
        self.transform_gens = [
            streams.generator(s, streams.TRAIN_BINARIZATION, device) for s in seeds
        ]
        self.states = [
            SeedState(s, torch.randperm(n, generator=g), best_state=width.snapshot(i))
            for i, (s, g) in enumerate(zip(seeds, self.order_gens, strict=True))
        ]
        self.step, self.elapsed_before, self.resumed_from = 0, 0.0, None
        # Where and with what the run trained: [{"step": first step, **environment.segment}],
        # one more wherever a resume changed the device kind or a version.
        self.segments: list[dict[str, Any]] = [{"step": 0, **segment(device)}]
        self.running = torch.zeros(len(seeds), dtype=torch.float64, device=device)
        self.started = time.perf_counter()

    def now(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def active(self) -> list[bool]:
        return [st.active for st in self.states]

    def precision(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def batches(self) -> torch.Tensor:
        """Every seed's next batch, ``[S, B, D]``, each from its own streams."""
        n = self.train.shape[0]
        rows = []
        for st, gen in zip(self.states, self.order_gens, strict=True):
            if st.cursor + self.batch > n:
                st.perm = torch.randperm(n, generator=gen)
                st.cursor = 0
            rows.append(st.perm[st.cursor : st.cursor + self.batch])
            st.cursor += self.batch
        x = self.train[torch.stack(rows).to(self.device)]
        if self.data.train_transform is not None:
            pairs = zip(x, self.transform_gens, strict=True)
            x = torch.stack([self.data.train_transform(xs, g) for xs, g in pairs])
        return x

    def train_step(self) -> None:
        """One step of every seed: its own batch and noise, its own gradient."""
        x = self.batches()
        progress = Progress(self.step, self.steps_per_epoch)
        with self.precision():
            losses = self.width.losses(x, progress)
        detached = losses.detach().double()
        finite = torch.isfinite(detached).tolist()
        for st, ok, value in zip(self.states, finite, detached.tolist(), strict=True):
            if st.active and not ok:
                st.error = (
                    f"non-finite training loss ({value}) at step {self.step + 1}; lower the "
                    "learning rate or check the components"
                )
                st.steps_done, st.seconds = self.step, self.now()
        # Seeds that stopped or failed keep their slices out of the step's gradient.
        active = torch.tensor(self.active, device=self.device)
        if active.any():
            total = torch.where(active, losses, torch.zeros_like(losses)).sum()
            self.width.step(total, active, self.budget.lr_at(self.step, self.steps_per_epoch))
        self.step += 1
        self.running += torch.where(active, detached, torch.zeros_like(detached))
        for st in self.states:
            st.since += st.active

    def note(self, i: int, val_loss: float, final: bool = False) -> None:
        """Seed ``i``'s validation: curve, best state, early stopping."""
        st = self.states[i]
        st.curve.append(
            {
                "step": self.step,
                "train_loss": float(self.running[i]) / max(st.since, 1),
                "val_neg_elbo": val_loss,
                "seconds": self.now(),
            }
        )
        st.since = 0
        self.running[i] = 0.0
        if val_loss < st.best_val:
            st.best_val, st.best_step = val_loss, self.step
            st.best_state = self.width.snapshot(i)
            st.bad = 0 if not final else st.bad
        elif not final:
            st.bad += 1
            if self.budget.patience is not None and st.bad >= self.budget.patience:
                st.stopped_early = True
                st.steps_done, st.seconds = self.step, self.now()

    def payload(self) -> dict[str, Any]:
        return {
            "kind": self.width.kind,
            "seeds": self.seeds,
            "width": self.width.payload(),
            "order_rngs": [g.get_state() for g in self.order_gens],
            "transform_rngs": [g.get_state() for g in self.transform_gens],
            "states": [st.as_dict() for st in self.states],
            "step": self.step,
            "elapsed": self.now(),
            "running": self.running,
            "segments": self.segments,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Back to a checkpoint's state (loaded on the CPU). One written on another kind of
        device resumes too: the device's streams (noise, training binarization) start afresh
        from (seed, :func:`vaebench.streams.moved`), the data order continues exactly, and
        ``segments`` gains a row at this step if the device kind or a version changed."""
        step = saved["step"]
        here = segment(self.device)
        # Checkpoints before "segments" were resumed on the kind of device that wrote them.
        history = list(saved.get("segments") or [{"step": 0, "device": here["device"]}])
        last = history[-1]
        moved_at = step if last["device"] != here["device"] else None
        self.width.restore(saved["width"], moved_at)
        for gen, gen_state in zip(self.order_gens, saved["order_rngs"], strict=True):
            gen.set_state(gen_state.cpu())
        for seed, gen, gen_state in zip(
            self.seeds, self.transform_gens, saved["transform_rngs"], strict=True
        ):
            if moved_at is None:
                gen.set_state(gen_state.cpu())
            else:
                gen.manual_seed(streams.moved(seed, streams.TRAIN_BINARIZATION, step))
        if any(last.get(name) != value for name, value in here.items()):
            history.append({"step": step, **here})
        self.segments = history
        self.states = [SeedState(**s) for s in saved["states"]]
        self.step, self.elapsed_before = step, saved["elapsed"]
        self.resumed_from = step
        self.running = saved["running"].to(self.device)
        self.started = time.perf_counter()

    def run(
        self,
        *,
        progress: bool,
        description: str,
        checkpoint: Path | None,
        write_bytes: Callable[[Path, bytes], None] | None,
    ) -> list[TrainResult | TrainingError]:
        """Train until every seed has stopped, the step budget or the time cap is reached; a
        checkpoint of the same seeds and width resumes where it stopped."""
        from tqdm.auto import tqdm

        saved = load_checkpoint(checkpoint, self.width.kind)
        if saved is not None and list(saved["seeds"]) == self.seeds:
            self.restore(saved)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=description,
            leave=False,
            disable=not progress,
        )
        budget = self.budget
        can_save = checkpoint is not None and write_bytes is not None
        with interrupts.deferred(can_save):
            while self.step < self.total_steps and any(self.active):
                if budget.max_seconds is not None and self.now() >= budget.max_seconds:
                    for st in self.states:
                        st.cap_hit = st.active
                    break
                self.train_step()
                bar.update(1)
                if self.step % budget.eval_every == 0 or self.step == self.total_steps:
                    val_losses = self.width.validate()
                    for i, active in enumerate(self.active):
                        if active:
                            self.note(i, val_losses[i])
                    bar.set_postfix(val=f"{min(val_losses):.2f}")
                due = budget.checkpoint_every and self.step % budget.checkpoint_every == 0
                if due and checkpoint is not None and write_bytes is not None:
                    save_payload(checkpoint, self.payload(), write_bytes)
                self.stop_if_asked(bar, checkpoint, write_bytes)
            self.stop_if_asked(bar, checkpoint, write_bytes)
        bar.close()
        return self.finish()

    def stop_if_asked(
        self,
        bar: Any,
        checkpoint: Path | None,
        write_bytes: Callable[[Path, bytes], None] | None,
    ) -> None:
        """Where a signal asked for a stop (:mod:`vaebench.interrupts`): a checkpoint of this
        step, then :class:`~vaebench.interrupts.Interrupted`."""
        signum = interrupts.requested()
        if signum is None:
            return
        bar.close()
        if checkpoint is None or write_bytes is None:
            raise interrupts.Interrupted(signum)
        save_payload(checkpoint, self.payload(), write_bytes)
        raise interrupts.Interrupted(signum, self.step)

    def finish(self) -> list[TrainResult | TrainingError]:
        """A last validation where the loop ended off an evaluation step, the best states into
        the models, and each seed's result."""
        ended = [i for i, st in enumerate(self.states) if st.active]
        unmeasured = [
            i
            for i in ended
            if not self.states[i].curve[-1:] or self.states[i].curve[-1]["step"] != self.step
        ]
        if unmeasured and self.step > 0:
            val_losses = self.width.validate()
            for i in unmeasured:
                self.note(i, val_losses[i], final=True)
        for i in ended:
            self.states[i].steps_done, self.states[i].seconds = self.step, self.now()
        self.width.load_best([st.best_state for st in self.states])
        unscored = [
            i
            for i, st in enumerate(self.states)
            if st.error is None and not math.isfinite(st.best_val)
        ]
        fallback = self.width.validate() if unscored else []  # no step was taken
        out: list[TrainResult | TrainingError] = []
        for i, st in enumerate(self.states):
            if st.error is not None:
                out.append(TrainingError(st.error))
                continue
            out.append(
                TrainResult(
                    steps_done=st.steps_done,
                    best_step=st.best_step,
                    best_val=st.best_val if math.isfinite(st.best_val) else fallback[i],
                    stopped_early=st.stopped_early,
                    cap_hit=st.cap_hit,
                    seconds=st.seconds,
                    curve=st.curve,
                    resumed_from=self.resumed_from,
                    segments=self.segments,
                )
            )
        return out


def build_objective(objective: Any | None) -> Any:
    """The objective object to train with: ``objective`` itself, or the plain ELBO."""
    if objective is not None:
        return objective
    from vaebench.objectives import ELBO

    return ELBO.factory(ELBO.options)


class SingleWidth:
    """One plain model: its own optimizer and noise stream, no ``vmap``."""

    kind = "single"

    def __init__(
        self, model: VAE, budget: Budget, seed: int, objective: Any, device: torch.device
    ) -> None:
        self.model, self.budget, self.objective, self.device = model, budget, objective, device
        self.optimizer = make_adam(
            list(model.parameters()), budget.lr, device, budget.adam_betas, budget.adam_eps
        )
        self.seed = seed
        self.noise = NoiseStream(streams.derive(seed, streams.NOISE), device)
        self.val: torch.Tensor | None = None

    def losses(self, x: torch.Tensor, progress: Progress) -> torch.Tensor:
        with normal_noise_from(self.noise):
            terms = self.model.log_weights(x[0], self.objective.samples)
            return self.objective.loss(terms, progress).reshape(1)

    def step(self, total: torch.Tensor, active: torch.Tensor, lr: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.budget.normalize_gradients:
            normalize_gradients([p.grad for p in self.model.parameters() if p.grad is not None])
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()

    def validate(self) -> list[float]:
        assert self.val is not None
        return [validation_neg_elbo(self.model, self.val)]

    def snapshot(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_best(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        self.model.load_state_dict(states[0])

    def payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "noise": self.noise.state(),
            "torch_rng": torch.get_rng_state(),
        }

    def restore(self, saved: dict[str, Any], moved_at: int | None = None) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        fresh = None
        if moved_at is not None:
            fresh = streams.moved(self.seed, streams.NOISE, moved_at)
        self.noise.load_state(saved["noise"], fresh)
        torch.set_rng_state(saved["torch_rng"].cpu())


def fit(
    model: VAE,
    data: SuiteData,
    budget: Budget,
    seed: int,
    *,
    objective: Any | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
    progress: bool = False,
    description: str = "train",
    checkpoint: Path | None = None,
    write_bytes: Callable[[Path, bytes], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place under ``budget`` with ``objective`` (default: the plain ELBO);
    on return it holds its best validation state. A non-finite loss raises
    :class:`TrainingError`."""
    device = device or torch.device("cpu")
    torch.manual_seed(streams.derive(seed, streams.GLOBAL))  # any other random op of a component
    width = SingleWidth(model, budget, seed, build_objective(objective), device)
    loop = TrainingLoop(width, data, budget, [seed], width.objective, device, precision)
    width.val = loop.val
    model.train()
    (result,) = loop.run(
        progress=progress, description=description, checkpoint=checkpoint, write_bytes=write_bytes
    )
    if isinstance(result, TrainingError):
        raise result
    return result
