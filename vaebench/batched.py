"""Seeds of one combination trained together as one vectorised model: the stacked width of
:class:`vaebench.train.TrainingLoop`.

The S models (one per seed, each built under its own seed) are stacked into tensors with a
leading seed dimension (``torch.func.stack_module_state``) and the training step runs once for
all of them through ``torch.func.vmap`` over ``functional_call``: a few large kernels instead of
S times a few dozen tiny ones. Each seed keeps everything it has when trained alone by
:func:`vaebench.train.fit`: its initialisation, its data and transform streams and its state
(the loop's, the same code), its noise (its own :class:`~vaebench.train.NoiseStream`, drawn
outside ``vmap`` and fed in), and the same objective code. The loss backpropagated is the *sum*
over seeds of each seed's loss, so each seed's slice receives its own gradient, and Adam is
element-wise, so one Adam over the stacked tensors is S independent Adams (gradient
normalisation, where the budget asks for it, is per seed slice). A seed trained here therefore
ends with the numbers it gets alone, up to float rounding.

``vmap`` runs with ``randomness="error"``: a component that draws random numbers other than
Gaussian reparameterisation noise, updates buffers in place or branches on data raises, and
:class:`NotVectorizable` tells the caller to train the seeds one at a time, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from vaebench import streams
from vaebench.contracts import Budget, Progress, SuiteData
from vaebench.errors import TrainingError
from vaebench.model import VAE
from vaebench.train import (
    VAL_CHUNK,
    VAL_NOISE_SEED,
    NoiseStream,
    TrainingLoop,
    TrainResult,
    build_objective,
    fixed_noise,
    make_adam,
    normal_noise_from,
    normalize_gradients,
)


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

    def load_state(self, state: dict[str, Any], fresh_seeds: Sequence[int] | None = None) -> None:
        """Back to :meth:`state`; with ``fresh_seeds`` (a checkpoint of another kind of device)
        each stream starts afresh from its seed and the drawn blocks are dropped."""
        if fresh_seeds is not None:
            for stream, seed in zip(self.streams, fresh_seeds, strict=True):
                stream.generator.manual_seed(seed)
            self.blocks = {}
            return
        for stream, gen_state in zip(self.streams, state["generators"], strict=True):
            stream.generator.set_state(gen_state.cpu())
        device = self.streams[0].device
        self.blocks = {tuple(k): [t.to(device), i] for k, t, i in state["blocks"]}


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

    def losses(
        self,
        x: torch.Tensor,
        noise: Sequence[torch.Tensor],
        objective: Any,
        progress: Progress,
    ) -> torch.Tensor:
        """Each seed's training loss, ``[S]``, for its batch ``x[s]`` and noise ``noise[.][s]``."""

        def seed_loss(params: dict, buffers: dict, xs: torch.Tensor, eps: list) -> torch.Tensor:
            feed = _Feed(eps)
            named = self._named(params, buffers)
            with normal_noise_from(feed):
                terms = functional_call(self.call, named, ("log_weights", xs, objective.samples))
                loss = objective.loss(terms, progress)
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
            named: dict[str, torch.Tensor] = dict(model.named_parameters())
            named.update(dict(model.named_buffers()))
            with torch.no_grad():
                for name, value in state.items():
                    named[name].copy_(value)


class StackedWidth:
    """S seeds' models as one stacked model: one optimizer over the stacked tensors, the seeds'
    noise streams side by side, one ``vmap`` call per training step or validation chunk."""

    kind = "batched"

    def __init__(
        self,
        models: Sequence[VAE],
        data: SuiteData,
        budget: Budget,
        seeds: Sequence[int],
        objective: Any,
        device: torch.device,
        precision: str,
    ) -> None:
        self.models, self.budget, self.objective, self.device = models, budget, objective, device
        self.seeds = list(seeds)
        self.train = data.train.to(device)
        self.val = data.val.to(device)
        self.data = data
        self.batch = min(budget.batch_size, self.train.shape[0])
        self.autocast = precision == "bf16"
        try:
            self.stack = _Stack(models, device)
        except Exception as exc:  # models whose parameters differ in name or shape
            raise NotVectorizable(
                f"the seeds' models cannot be stacked: {_first_line(exc)}"
            ) from exc
        self.noise = _StackedNoise(
            [NoiseStream(streams.derive(s, streams.NOISE), device) for s in seeds]
        )
        self.trainable = [p for p in self.stack.params.values() if p.requires_grad]
        self.optimizer = make_adam(
            self.trainable, budget.lr, device, budget.adam_betas, budget.adam_eps
        )
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
            x = self.data.train_transform(x, torch.Generator(device=self.device).manual_seed(0))
        zeros = _Recorder(
            lambda shape, dtype, dev: torch.zeros(tuple(shape), dtype=dtype, device=dev)
        )
        precision = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)
        with torch.no_grad(), precision:
            terms = self.stack.one("log_weights", zeros, x, self.objective.samples)
            self.objective.loss(terms, Progress(0, 1))
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

    def losses(self, x: torch.Tensor, progress: Progress) -> torch.Tensor:
        eps = [self.noise(shape, dtype) for shape, dtype in self.calls]
        try:
            return self.stack.losses(x, eps, self.objective, progress)
        except NotVectorizable:
            raise
        except Exception as exc:
            raise NotVectorizable(
                f"vmap failed at step {progress.step + 1}: {_first_line(exc)}"
            ) from exc

    def step(self, total: torch.Tensor, active: torch.Tensor, lr: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.budget.normalize_gradients:
            normalize_gradients([p.grad for p in self.trainable if p.grad is not None], 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()

    def validate(self) -> list[float]:
        """Every seed's validation -ELBO, as :func:`vaebench.train.validation_neg_elbo`."""
        self.stack.call.eval()
        totals = [0.0] * len(self.models)
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

    def snapshot(self, index: int) -> dict[str, torch.Tensor]:
        return self.stack.seed_slice(index)

    def load_best(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        self.stack.load_into_models(states)

    def payload(self) -> dict[str, Any]:
        return {
            "params": {k: v.detach() for k, v in self.stack.params.items()},
            "buffers": self.stack.buffers,
            "optimizer": self.optimizer.state_dict(),
            "noise": self.noise.state(),
        }

    def restore(self, saved: dict[str, Any], moved_at: int | None = None) -> None:
        with torch.no_grad():
            for name, value in saved["params"].items():
                self.stack.params[name].copy_(value)
            for name, value in saved["buffers"].items():
                self.stack.buffers[name].copy_(value)
        self.optimizer.load_state_dict(saved["optimizer"])
        fresh = None
        if moved_at is not None:
            fresh = [streams.moved(s, streams.NOISE, moved_at) for s in self.seeds]
        self.noise.load_state(saved["noise"], fresh)


def fit_batched(
    models: Sequence[VAE],
    data: SuiteData,
    budget: Budget,
    seeds: Sequence[int],
    *,
    objective: Any | None = None,
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
    if len(models) != len(seeds) or not models:
        raise ValueError("fit_batched needs one model per seed")
    device = device or torch.device("cpu")
    objective = build_objective(objective)
    width = StackedWidth(models, data, budget, seeds, objective, device, precision)
    loop = TrainingLoop(width, data, budget, seeds, objective, device, precision)
    width.validate()  # fails now, not after eval_every steps, where vmap cannot run the model
    return loop.run(
        progress=progress, description=description, checkpoint=checkpoint, write_bytes=write_bytes
    )
