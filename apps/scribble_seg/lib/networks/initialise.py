"""Seeded randomness of the networks: the request's ``seed`` alone decides a training's initial
weights (:func:`seeded_copy`), and a seed decides MC-dropout masks (:func:`seeded_random_state`).

A MONAI Label app builds every network once, when its configs are initialised, from torch's
global random state at that moment: which other models the conf lists, how many trainings the
process already ran (MONAI's ``set_determinism(None)`` re-seeds from the OS after each) or what the
calling code drew before all change it. Trainings from those weights are not reproducible from their
``seed``. :func:`seeded_copy` gives each training a copy re-drawn by every module's own default
initialiser (``reset_parameters``: convolutions, batch norm and its running statistics, PReLU,
...) under a private generator seeded with ``seed``; the global random state is left untouched.
"""

import contextlib
import copy
from typing import Optional

import torch
import torch.nn as nn


@contextlib.contextmanager
def seeded_random_state(seed: Optional[int]):
    """Context: torch's random state seeded with ``seed`` and restored on exit -- the CPU's and
    every CUDA device's (``torch.manual_seed`` seeds them all); nothing when ``seed`` is ``None``."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def seeded_copy(network: nn.Module, seed: int) -> nn.Module:
    """A deep copy of ``network`` whose parameters and buffers are re-initialised from ``seed``.

    Every module with ``reset_parameters`` re-draws its own, in ``modules()`` order, so two
    copies of the same architecture with the same ``seed`` are identical however the originals
    were initialised. Modules holding parameters but no ``reset_parameters`` are refused: their
    weights would silently keep the original's values.
    """
    net = copy.deepcopy(network)
    with seeded_random_state(seed):
        for name, module in net.named_modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            elif any(True for _ in module.parameters(recurse=False)):
                raise TypeError(
                    f"module {name or type(net).__name__} ({type(module).__name__}) has parameters "
                    f"but no reset_parameters(): it cannot be re-initialised from a seed"
                )
    return net
