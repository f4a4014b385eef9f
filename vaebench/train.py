"""The budgeted training loop. It knows the model's loss and nothing of executors or outputs.

Data sits in memory as one tensor and batches are drawn by indexing with a permutation from the
seed's own generator. Validation -ELBO (one sample per point, fixed evaluation noise) is
measured every ``eval_every`` steps; the best state on validation is kept and restored at the
end. A checkpoint (model, optimizer, RNG states, step, best-so-far, curve) is written every
``checkpoint_every`` steps, so a killed run continues where it stopped and ends with the same
numbers as an uninterrupted one.

Reparameterisation noise does not come from the global RNG: every seed draws it from its own
:class:`NoiseStream`, which :func:`normal_noise_from` plugs into ``torch.distributions``. A seed
trained alone and the same seed trained in a vectorised batch (:mod:`vaebench.batched`) thus see
the same noise, draw for draw.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.distributions import (
    lowrank_multivariate_normal,
    multivariate_normal,
    normal,
    studentT,
    utils,
)

from vaebench.contracts import Budget, SuiteData
from vaebench.errors import TrainingError
from vaebench.model import VAE

VAL_NOISE_SEED = 4321
NOISE_BLOCK = 64  # draws of one shape fetched from a seed's generator at once

NoiseSource = Callable[[Sequence[int], torch.dtype, Any], torch.Tensor]

# Every torch.distributions module that draws its reparameterisation noise through
# ``utils._standard_normal`` (torch 2.x); each holds its own reference, so each is patched.
_NOISE_MODULES = (utils, normal, multivariate_normal, lowrank_multivariate_normal, studentT)


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

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
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
        }


@torch.no_grad()
def validation_neg_elbo(model: VAE, x: torch.Tensor, batch: int = 1000) -> float:
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


def make_adam(params: list[torch.Tensor], lr: float, device: Any) -> torch.optim.Adam:
    """Adam over ``params``, fused where the device has the fused kernel."""
    kind = torch.device(device).type if device is not None else "cpu"
    fused = kind in FUSED_ADAM_DEVICES and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def _state_copy(model: VAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save(path: Path, payload: dict[str, Any], write: Callable[[Path, bytes], None]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write(path, buffer.getvalue())


def load_checkpoint(path: Path | None, device: torch.device, kind: str) -> dict[str, Any] | None:
    """A checkpoint's payload if ``path`` holds one of this ``kind`` (``"single"`` for
    :func:`fit`, ``"batched"`` for :func:`vaebench.batched.fit_batched`), else None."""
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    return state if state.get("kind") == kind else None


def fit(
    model: VAE,
    data: SuiteData,
    budget: Budget,
    seed: int,
    *,
    device: torch.device | None = None,
    precision: str = "fp32",
    progress: bool = False,
    description: str = "train",
    checkpoint: Path | None = None,
    write_bytes: Callable[[Path, bytes], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place under ``budget``; on return it holds its best validation state."""
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    train = data.train.to(device)
    val = data.val.to(device)
    n = train.shape[0]
    batch = min(budget.batch_size, n)
    total_steps = budget.total_steps(n)
    optimizer = make_adam(list(model.parameters()), budget.lr, device)
    autocast = precision == "bf16"
    noise = NoiseStream(seed, device)

    step, best_val, best_step, bad = 0, math.inf, 0, 0
    best_state = _state_copy(model)
    curve: list[dict[str, float]] = []
    elapsed_before = 0.0
    resumed_from = None
    perm = torch.randperm(n, generator=order_gen)
    cursor = 0
    stopped_early = False
    running_before, since_before = 0.0, 0

    state = load_checkpoint(checkpoint, device, "single")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        order_gen.set_state(state["order_rng"])
        noise.load_state(state["noise"])
        step, best_val, best_step, bad = (
            state["step"],
            state["best_val"],
            state["best_step"],
            state["bad"],
        )
        best_state, curve = state["best_state"], state["curve"]
        perm, cursor, elapsed_before = state["perm"], state["cursor"], state["elapsed"]
        stopped_early = state["stopped_early"]
        running_before, since_before = state["running"], state["since"]
        resumed_from = step

    def save_checkpoint() -> None:
        if checkpoint is None or write_bytes is None:
            return
        payload = {
            "kind": "single",
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "order_rng": order_gen.get_state(),
            "noise": noise.state(),
            "step": step,
            "best_val": best_val,
            "best_step": best_step,
            "bad": bad,
            "best_state": best_state,
            "curve": curve,
            "perm": perm,
            "cursor": cursor,
            "elapsed": elapsed_before + (time.perf_counter() - start),
            "stopped_early": stopped_early,
            "running": running,
            "since": since,
        }
        _save(checkpoint, payload, write_bytes)

    from tqdm.auto import tqdm

    start = time.perf_counter()
    cap_hit = False
    bar = tqdm(total=total_steps, initial=step, desc=description, leave=False, disable=not progress)
    model.train()
    running, since = running_before, since_before
    while step < total_steps and not stopped_early:
        if (
            budget.max_seconds is not None
            and elapsed_before + time.perf_counter() - start >= budget.max_seconds
        ):
            cap_hit = True
            break
        if cursor + batch > n:
            perm = torch.randperm(n, generator=order_gen)
            cursor = 0
        idx = perm[cursor : cursor + batch].to(device)
        cursor += batch
        x = train[idx]
        if data.train_transform is not None:
            x = data.train_transform(x, order_gen)
        with (
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast),
            normal_noise_from(noise),
        ):
            loss = model.loss(x)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite training loss ({float(loss.detach())}) at step {step + 1}; "
                "lower the learning rate or check the components"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        running += float(loss.detach())
        since += 1
        bar.update(1)
        if step % budget.eval_every == 0 or step == total_steps:
            val_loss = validation_neg_elbo(model, val)
            curve.append(
                {
                    "step": step,
                    "train_loss": running / since,
                    "val_neg_elbo": val_loss,
                    "seconds": elapsed_before + time.perf_counter() - start,
                }
            )
            running, since = 0.0, 0
            bar.set_postfix(val=f"{val_loss:.2f}")
            if val_loss < best_val:
                best_val, best_step, bad = val_loss, step, 0
                best_state = _state_copy(model)
            else:
                bad += 1
                if budget.patience is not None and bad >= budget.patience:
                    stopped_early = True
        if budget.checkpoint_every and step % budget.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    if (not curve or curve[-1]["step"] != step) and step > 0:
        val_loss = validation_neg_elbo(model, val)
        curve.append(
            {
                "step": step,
                "train_loss": running / max(since, 1),
                "val_neg_elbo": val_loss,
                "seconds": elapsed_before + time.perf_counter() - start,
            }
        )
        if val_loss < best_val:
            best_val, best_step = val_loss, step
            best_state = _state_copy(model)
    model.load_state_dict(best_state)
    if not math.isfinite(best_val):
        best_val = validation_neg_elbo(model, val)
    return TrainResult(
        steps_done=step,
        best_step=best_step,
        best_val=best_val,
        stopped_early=stopped_early,
        cap_hit=cap_hit,
        seconds=elapsed_before + time.perf_counter() - start,
        curve=curve,
        resumed_from=resumed_from,
    )
