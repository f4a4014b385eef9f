"""One random stream per purpose, derived from (seed, purpose): nothing else seeds anything.

A run's seed used to seed one generator state shared by the weight initialisation, the
reparameterisation noise, the data order and the binarization, so that, for example, the first
noise block was a transform of the uniforms that initialised the encoder's first layer, and a
seed's first-layer weights correlated with the bits of a split binarized with the same integer.
Here every purpose gets its own 63-bit generator seed from a hash of (seed, purpose), so streams
are independent whatever the seeds.

:data:`SEEDING` names this scheme; it is part of every result's key, so results computed under
another scheme are never mixed with these in a table or a resume.
"""

from __future__ import annotations

import hashlib

import torch

SEEDING = "streams-1"

# The purposes the trainer and the built-in suites draw from.
INIT = "init"  # weight initialisation (and any other global-RNG draw while building)
NOISE = "noise"  # reparameterisation noise in training
ORDER = "order"  # the order in which training examples are drawn
TRAIN_BINARIZATION = "binarize/train"  # a fresh binarization of every training batch
VALIDATION_NOISE = "validation-noise"  # the fixed noise of validation -ELBO (shared by seeds)
GLOBAL = "global"  # torch's global RNG while training, for any other random op of a component


def derive(seed: int, purpose: str) -> int:
    """The generator seed of ``purpose`` for ``seed``: the first 63 bits of
    SHA-256("<seed>/<purpose>"), so it is a valid ``torch.manual_seed`` argument."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"a seed must be an int, got {type(seed).__name__}")
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def moved(seed: int, purpose: str, step: int) -> int:
    """The generator seed of ``purpose`` for ``seed`` when a run resumes at ``step`` on another
    kind of device than its checkpoint's: a generator's state does not carry over between kinds
    (the CPU's Mersenne Twister, CUDA's Philox), so the stream starts afresh from
    (seed, "<purpose>/moved-at-step-<step>")."""
    return derive(seed, f"{purpose}/moved-at-step-{step}")


def generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for ``purpose`` of ``seed`` on ``device``."""
    return torch.Generator(device=torch.device(device)).manual_seed(derive(seed, purpose))


def split_binarization(purpose_seed: int, split: str) -> int:
    """The generator seed of the fixed binarization of ``split`` (``val``, ``test``, an OOD
    set's name) for a suite's ``binarization_seed``."""
    return derive(purpose_seed, f"binarize/{split}")
