"""Seeds of one combination trained together as one vectorised model.

The S models (one per seed, each built under its own seed) are stacked into tensors with a
leading seed dimension (``torch.func.stack_module_state``) and the training step runs once for
all of them through ``torch.func.vmap`` over ``functional_call``: a few large kernels instead of
S times a few dozen tiny ones. Each seed keeps everything it has when trained alone by
:func:`vaebench.train.fit`: its initialisation, its data order (its own generator), its noise
(its own :class:`~vaebench.train.NoiseStream`, drawn outside ``vmap`` and fed in), its
validation curve, early stopping and best-on-validation state. The loss backpropagated is the
*sum* over seeds of each seed's mean loss, so each seed's slice receives its own gradient, and
Adam is element-wise, so one Adam over the stacked tensors is S independent Adams. A seed
trained here therefore ends with the numbers it gets alone, up to float rounding.

``vmap`` runs with ``randomness="error"``: a component that draws random numbers other than
Gaussian reparameterisation noise, updates buffers in place or branches on data raises, and
:class:`NotVectorizable` tells the caller to train the seeds one at a time, with the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from vaebench.contracts import Budget, SuiteData
from vaebench.errors import TrainingError
from vaebench.model import VAE
from vaebench.train import (
    VAL_NOISE_SEED,
    NoiseStream,
    TrainResult,
    _save,
    fixed_noise,
    load_checkpoint,
    make_adam,
    normal_noise_from,
    validation_neg_elbo,
)

VAL_CHUNK = 1000  # validation points per pass, as in validation_neg_elbo


class NotVectorizable(Exception):
    """The seeds cannot be trained as one vectorised model; ``str(exc)`` says why."""


class _Call(nn.Module):
    """Calls a named method of the wrapped VAE, so ``functional_call`` reaches beyond forward."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, method: str, *args: Any) -> Any:
        return getattr(self.vae, method)(*args)


class _Feed:
    """A noise source handing out given tensors in order, checking each one's shape."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self.tensors = tensors
        self.used = 0

    def __call__(self, shape: Sequence[int], dtype: torch.dtype, device: Any) -> torch.Tensor:
        if self.used >= len(self.tensors):
            raise NotVectorizable("the model drew more Gaussian noise than in its first step")
        tensor = self.tensors[self.used]
        self.used += 1
        if tuple(tensor.shape) != tuple(shape):
            raise NotVectorizable(
                f"the model's noise shapes change between steps ({tuple(shape)} instead of "
                f"{tuple(tensor.shape)})"
            )
        return tensor


class _Recorder:
    """A noise source that records the (shape, dtype) of every draw and forwards to ``inner``."""

    def __init__(self, inner: Callable[..., torch.Tensor]) -> None:
        self.inner = inner
        self.calls: list[tuple[tuple[int, ...], torch.dtype]] = []
        self.drawn: list[torch.Tensor] = []

    def __call__(self, shape: Sequence[int], dtype: torch.dtype, device: Any) -> torch.Tensor:
        self.calls.append((tuple(int(s) for s in shape), dtype))
        out = self.inner(shape, dtype, device)
        self.drawn.append(out)
        return out


class _StackedNoise:
    """The seeds' noise streams side by side: ``[S, *shape]`` per draw, the same rows each
    stream would hand out alone (same blocks, same order)."""

    def __init__(self, streams: Sequence[NoiseStream]) -> None:
        self.streams = streams
        self.block = streams[0].block
        self.blocks: dict[tuple[int, ...], list[Any]] = {}

    def __call__(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        held = self.blocks.get(shape)
        if held is None or held[1] == self.block:
            fresh = torch.stack([s.fresh_block(shape) for s in self.streams])
            held = self.blocks[shape] = [fresh, 0]
        rows = held[0][:, held[1]]
        held[1] += 1
        return rows.to(dtype=dtype)

    def state(self) -> dict[str, Any]:
        return {
            "generators": [s.generator.get_state() for s in self.streams],
            "blocks": [(list(k), v[0], v[1]) for k, v in self.blocks.items()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        for stream, gen_state in zip(self.streams, state["generators"], strict=True):
            stream.generator.set_state(gen_state)
        device = self.streams[0].device
        self.blocks = {tuple(k): [t.to(device), i] for k, t, i in state["blocks"]}


@dataclass
class _SeedState:
    """What one seed of the batch carries between steps (as in :func:`vaebench.train.fit`)."""

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class _Stack:
    """The S models as stacked tensors, and the vmapped loss and validation over them."""

    def __init__(self, models: Sequence[VAE], device: torch.device) -> None:
        self.models = models
        self.call = _Call(models[0])
        params, buffers = stack_module_state(list(models))
        self.params = {
            name: p.to(device).detach().requires_grad_(p.requires_grad)
            for name, p in params.items()
        }
        self.buffers = {name: b.to(device) for name, b in buffers.items()}

    def _named(self, params: dict[str, Any], buffers: dict[str, Any]) -> tuple[dict, dict]:
        return {"vae." + k: v for k, v in params.items()}, {
            "vae." + k: v for k, v in buffers.items()
        }

    def seed_slice(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index].detach().clone() for k, v in {**self.params, **self.buffers}.items()}

    def one(self, method: str, source: Callable[..., torch.Tensor], *args: Any) -> Any:
        """``method`` of seed 0's model, un-vectorised, with noise from ``source``."""
        params = {k: v[0] for k, v in self.params.items()}
        buffers = {k: v[0] for k, v in self.buffers.items()}
        with normal_noise_from(source):
            return functional_call(self.call, self._named(params, buffers), (method, *args))

    def losses(self, x: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each seed's training loss, ``[S]``, for its batch ``x[s]`` and noise ``noise[.][s]``."""

        def seed_loss(params: dict, buffers: dict, xs: torch.Tensor, eps: list) -> torch.Tensor:
            feed = _Feed(eps)
            with normal_noise_from(feed):
                loss = functional_call(self.call, self._named(params, buffers), ("loss", xs))
            if feed.used != len(eps):
                raise NotVectorizable("the model drew less Gaussian noise than in its first step")
            return loss

        return vmap(seed_loss, randomness="error")(self.params, self.buffers, x, list(noise))

    def val_sums(self, x: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each seed's sum of one-sample log-weights over ``x`` with shared noise, ``[S]``."""

        def seed_sum(params: dict, buffers: dict) -> torch.Tensor:
            with normal_noise_from(_Feed(noise)):
                lw = functional_call(self.call, self._named(params, buffers), ("log_weights", x, 1))
            return lw.log_w.sum()

        return vmap(seed_sum, randomness="error")(self.params, self.buffers)

    def load_into_models(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        for model, state in zip(self.models, states, strict=True):
            named = dict(model.named_parameters())
            named.update(dict(model.named_buffers()))
            with torch.no_grad():
                for name, value in state.items():
                    named[name].copy_(value)


class _Batch:
    """S seeds training together: their stacked model, optimizer, data orders, noise and
    per-seed bookkeeping, and one training step or validation of all of them."""

    def __init__(
        self,
        models: Sequence[VAE],
        data: SuiteData,
        budget: Budget,
        seeds: Sequence[int],
        device: torch.device,
        precision: str,
    ) -> None:
        self.data, self.budget, self.seeds, self.device = data, budget, list(seeds), device
        self.train = data.train.to(device)
        self.val = data.val.to(device)
        self.batch = min(budget.batch_size, self.train.shape[0])
        self.autocast = precision == "bf16"
        try:
            self.stack = _Stack(models, device)
        except Exception as exc:  # models whose parameters differ in name or shape
            raise NotVectorizable(
                f"the seeds' models cannot be stacked: {_first_line(exc)}"
            ) from exc
        self.order_gens = [torch.Generator().manual_seed(s) for s in seeds]
        n = self.train.shape[0]
        self.states = [
            _SeedState(s, torch.randperm(n, generator=g), best_state=self.stack.seed_slice(i))
            for i, (s, g) in enumerate(zip(seeds, self.order_gens, strict=True))
        ]
        self.noise = _StackedNoise([NoiseStream(s, device) for s in seeds])
        trainable = [p for p in self.stack.params.values() if p.requires_grad]
        self.optimizer = make_adam(trainable, budget.lr, device)
        self.step, self.elapsed_before, self.resumed_from = 0, 0.0, None
        self.running = torch.zeros(len(seeds), dtype=torch.float64, device=device)
        self.started = time.perf_counter()
        try:
            self._probe()
        except NotVectorizable:
            raise
        except Exception as exc:
            raise NotVectorizable(f"the model failed outside vmap: {_first_line(exc)}") from exc

    def _probe(self) -> None:
        """Run seed 0 once outside vmap: the noise draws of one training step (their shapes),
        and the validation noise every seed shares (what validation_neg_elbo draws)."""
        x = self.train[: self.batch]
        if self.data.train_transform is not None:
            x = self.data.train_transform(x, torch.Generator().manual_seed(0))
        zeros = _Recorder(
            lambda shape, dtype, dev: torch.zeros(tuple(shape), dtype=dtype, device=dev)
        )
        with torch.no_grad(), self._precision():
            self.stack.one("loss", zeros, x)
        self.calls = zeros.calls
        source = fixed_noise(VAL_NOISE_SEED, self.device)
        self.val_noise: list[list[torch.Tensor]] = []
        self.stack.call.eval()
        with torch.no_grad():
            for start in range(0, self.val.shape[0], VAL_CHUNK):
                recorder = _Recorder(source)
                self.stack.one("log_weights", recorder, self.val[start : start + VAL_CHUNK], 1)
                self.val_noise.append(recorder.drawn)
        self.stack.call.train()

    def _precision(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def now(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def active(self) -> list[bool]:
        return [st.active for st in self.states]

    def train_step(self) -> None:
        """One step of every seed: its own batch and noise, its own gradient."""
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
            pairs = zip(x, self.order_gens, strict=True)
            x = torch.stack([self.data.train_transform(xs, g) for xs, g in pairs])
        eps = [self.noise(shape, dtype) for shape, dtype in self.calls]
        try:
            with self._precision():
                losses = self.stack.losses(x, eps)
        except NotVectorizable:
            raise
        except Exception as exc:
            raise NotVectorizable(
                f"vmap failed at step {self.step + 1}: {_first_line(exc)}"
            ) from exc
        detached = losses.detach().double()
        finite = torch.isfinite(detached).tolist()
        for st, ok, value in zip(self.states, finite, detached.tolist(), strict=True):
            if st.active and not ok:  # as train.fit says it, for this seed alone
                st.error = (
                    f"non-finite training loss ({value}) at step {self.step + 1}; lower the "
                    "learning rate or check the components"
                )
                st.steps_done, st.seconds = self.step, self.now()
        # Seeds that stopped or failed keep their slices out of the step's gradient.
        active = torch.tensor(self.active, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        torch.where(active, losses, torch.zeros_like(losses)).sum().backward()
        self.optimizer.step()
        self.step += 1
        self.running += torch.where(active, detached, torch.zeros_like(detached))
        for st in self.states:
            st.since += st.active

    def validate(self) -> list[float]:
        """Every seed's validation -ELBO, as :func:`vaebench.train.validation_neg_elbo`."""
        self.stack.call.eval()
        totals = [0.0] * len(self.seeds)
        with torch.no_grad():
            for start, eps in zip(
                range(0, self.val.shape[0], VAL_CHUNK), self.val_noise, strict=True
            ):
                try:
                    sums = self.stack.val_sums(self.val[start : start + VAL_CHUNK], eps).tolist()
                except NotVectorizable:
                    raise
                except Exception as exc:
                    raise NotVectorizable(f"vmap failed in validation: {_first_line(exc)}") from exc
                totals = [t + s for t, s in zip(totals, sums, strict=True)]
        self.stack.call.train()
        return [-t / self.val.shape[0] for t in totals]

    def note(self, i: int, val_loss: float, final: bool = False) -> None:
        """Seed ``i``'s validation: curve, best state, early stopping (as train.fit)."""
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
            st.best_state = self.stack.seed_slice(i)
            st.bad = 0 if not final else st.bad
        elif not final:
            st.bad += 1
            if self.budget.patience is not None and st.bad >= self.budget.patience:
                st.stopped_early = True
                st.steps_done, st.seconds = self.step, self.now()

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "batched",
            "seeds": self.seeds,
            "params": {k: v.detach() for k, v in self.stack.params.items()},
            "buffers": self.stack.buffers,
            "optimizer": self.optimizer.state_dict(),
            "noise": self.noise.state(),
            "order_rngs": [g.get_state() for g in self.order_gens],
            "states": [st.as_dict() for st in self.states],
            "step": self.step,
            "elapsed": self.now(),
            "running": self.running,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, value in saved["params"].items():
                self.stack.params[name].copy_(value)
            for name, value in saved["buffers"].items():
                self.stack.buffers[name].copy_(value)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.noise.load_state(saved["noise"])
        for gen, gen_state in zip(self.order_gens, saved["order_rngs"], strict=True):
            gen.set_state(gen_state)
        self.states = [_SeedState(**s) for s in saved["states"]]
        self.step, self.elapsed_before = saved["step"], saved["elapsed"]
        self.resumed_from = saved["step"]
        self.running = saved["running"].to(self.device)
        self.started = time.perf_counter()

    def finish(self, models: Sequence[VAE]) -> list[TrainResult | TrainingError]:
        """A last validation where the loop ended off an evaluation step (as train.fit), the
        best states into the models, and each seed's result."""
        ended = [i for i, st in enumerate(self.states) if st.active]
        unmeasured = [
            i
            for i in ended
            if not self.states[i].curve[-1:] or self.states[i].curve[-1]["step"] != self.step
        ]
        if unmeasured and self.step > 0:
            val_losses = self.validate()
            for i in unmeasured:
                self.note(i, val_losses[i], final=True)
        for i in ended:
            self.states[i].steps_done, self.states[i].seconds = self.step, self.now()
        self.stack.load_into_models([st.best_state for st in self.states])
        out: list[TrainResult | TrainingError] = []
        for model, st in zip(models, self.states, strict=True):
            if st.error is not None:
                out.append(TrainingError(st.error))
                continue
            best_val = st.best_val
            if not math.isfinite(best_val):  # no step was taken
                best_val = validation_neg_elbo(model, self.val)
            out.append(
                TrainResult(
                    steps_done=st.steps_done,
                    best_step=st.best_step,
                    best_val=best_val,
                    stopped_early=st.stopped_early,
                    cap_hit=st.cap_hit,
                    seconds=st.seconds,
                    curve=st.curve,
                    resumed_from=self.resumed_from,
                )
            )
        return out


def fit_batched(
    models: Sequence[VAE],
    data: SuiteData,
    budget: Budget,
    seeds: Sequence[int],
    *,
    device: torch.device | None = None,
    precision: str = "fp32",
    progress: bool = False,
    description: str = "train",
    checkpoint: Path | None = None,
    write_bytes: Callable[[Path, bytes], None] | None = None,
) -> list[TrainResult | TrainingError]:
    """Train ``models[i]`` (built under ``seeds[i]``) together, as :func:`vaebench.train.fit`
    would train each alone; on return each holds its best validation state.

    A seed whose loss turns non-finite gets a :class:`TrainingError` in its place and the others
    go on. Raises :class:`NotVectorizable` (with no model changed) when the components cannot
    run under ``vmap``. A checkpoint holds the whole batch; only a batch of the same seeds
    resumes from it.
    """
    from tqdm.auto import tqdm

    if len(models) != len(seeds) or not models:
        raise ValueError("fit_batched needs one model per seed")
    device = device or torch.device("cpu")
    run = _Batch(models, data, budget, seeds, device, precision)
    saved = load_checkpoint(checkpoint, device, "batched")
    if saved is not None and list(saved["seeds"]) == list(seeds):
        run.restore(saved)
    run.validate()  # fails now, not after eval_every steps, where vmap cannot run the model
    total_steps = budget.total_steps(run.train.shape[0])
    bar = tqdm(
        total=total_steps, initial=run.step, desc=description, leave=False, disable=not progress
    )
    while run.step < total_steps and any(run.active):
        if budget.max_seconds is not None and run.now() >= budget.max_seconds:
            for st in run.states:
                st.cap_hit = st.active
            break
        run.train_step()
        bar.update(1)
        if run.step % budget.eval_every == 0 or run.step == total_steps:
            val_losses = run.validate()
            for i, active in enumerate(run.active):
                if active:
                    run.note(i, val_losses[i])
            bar.set_postfix(val=f"{min(val_losses):.2f}")
        due = budget.checkpoint_every and run.step % budget.checkpoint_every == 0
        if due and checkpoint is not None and write_bytes is not None:
            _save(checkpoint, run.payload(), write_bytes)
    bar.close()
    return run.finish(models)
