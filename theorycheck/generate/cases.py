"""Data sets for generated audit cases, by kind."""

from __future__ import annotations

import torch


def generated_data(kind: str, n: int, d: int, seed: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of :mod:`theorycheck.generate.data`'s ``separable`` (margin 0.1), ``random`` (labels) or ``digits``."""
    from . import data as datasets

    made = {"separable": lambda: datasets.separable(n, d, margin=0.1, seed=seed, dtype=dtype),
            "random": lambda: datasets.random_labels(n, d, seed=seed, dtype=dtype),
            "digits": lambda: datasets.digits(n, seed=seed, dtype=dtype)}[kind]()
    return made.X, made.y
