"""Dataset generators for binary classification (labels in {-1, +1}), all seeded and offline.

- :func:`separable`: linearly separable through the origin with a chosen geometric margin;
- :func:`teacher_labelled`: labels given by a random teacher network (separable by that network);
- :func:`random_labels`: Gaussian inputs with coin-flip labels (Zhang et al. 2017);
- :func:`digits`: a small real data set shipped with scikit-learn (8x8 digits, two classes).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from ..core.errors import expect


@dataclasses.dataclass(frozen=True)
class Dataset:
    X: torch.Tensor
    y: torch.Tensor  # {-1, +1}, same dtype as X
    name: str
    margin: float | None = None  # geometric margin of the known separator, when one is known
    separator: torch.Tensor | None = None  # unit vector w with y <w, x> >= margin, when linear

    def to(self, device=None, dtype=None) -> "Dataset":
        move = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        return dataclasses.replace(self, X=move(self.X), y=move(self.y), separator=move(self.separator))


def _check_sizes(n: int, d: int) -> None:
    expect(int(n) >= 2 and int(d) >= 1, expected="n >= 2 samples and d >= 1 features",
           received=f"n={n}, d={d}", fix="ask for at least two samples")


def alternating_labels(n: int, *, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The labels +1, -1, +1, ... of n samples: both classes present (n >= 2) for points drawn without one."""
    return torch.where(torch.arange(n, device=device) % 2 == 0, 1.0, -1.0).to(dtype)


def separable(n: int, d: int, *, margin: float = 0.1, seed: int = 0, dtype=torch.float64) -> Dataset:
    """n points on the unit sphere in R^d, labelled by a random unit w, all with |<w, x>| >= margin.

    Points inside the margin band are pushed out along w, so the geometric margin of w is exactly
    ``margin`` (attained by at least one point per class once n >= 2).
    """
    _check_sizes(n, d)
    expect(0 < margin < 1, expected="0 < margin < 1 (points lie on the unit sphere)", received=f"margin={margin}",
           fix="choose a margin such as 0.1")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    X = rng.standard_normal((n, d))
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    along = X @ w
    orth = X - np.outer(along, w)
    orth_norm = np.linalg.norm(orth, axis=1, keepdims=True)
    orth = np.where(orth_norm > 0, orth / np.maximum(orth_norm, 1e-300), 0.0)
    # component along w: at least `margin`, with the sign of the label; the rest orthogonal, unit total norm
    c = np.maximum(np.abs(along) / np.linalg.norm(X, axis=1), margin)
    c[:2] = margin  # the margin is attained on both classes
    X = y[:, None] * c[:, None] * w[None, :] + np.sqrt(1 - c**2)[:, None] * orth
    if d == 1:
        X = y[:, None] * np.ones((n, 1))
        margin = 1.0
    return Dataset(torch.tensor(X, dtype=dtype), torch.tensor(y, dtype=dtype), f"separable(n={n}, d={d}, "
                   f"margin={margin}, seed={seed})", margin, torch.tensor(w, dtype=dtype))


def teacher_labelled(n: int, d: int, *, hidden: int = 8, seed: int = 0, dtype=torch.float64) -> Dataset:
    """Gaussian inputs labelled by the sign of a random bias-free one-hidden-layer ReLU teacher."""
    _check_sizes(n, d)
    rng = np.random.default_rng(seed)
    W1, w2 = rng.standard_normal((hidden, d)), rng.standard_normal(hidden)
    X = rng.standard_normal((n, d))
    scores = np.maximum(X @ W1.T, 0) @ w2
    y = np.where(scores >= 0, 1.0, -1.0)
    return Dataset(torch.tensor(X, dtype=dtype), torch.tensor(y, dtype=dtype),
                   f"teacher_labelled(n={n}, d={d}, hidden={hidden}, seed={seed})")


def random_labels(n: int, d: int, *, seed: int = 0, dtype=torch.float64) -> Dataset:
    """Gaussian inputs with independent fair coin-flip labels."""
    _check_sizes(n, d)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.choice([-1.0, 1.0], size=n)
    return Dataset(torch.tensor(X, dtype=dtype), torch.tensor(y, dtype=dtype),
                   f"random_labels(n={n}, d={d}, seed={seed})")


def digits(n: int | None = None, *, classes: tuple[int, int] = (0, 1), seed: int = 0,
           dtype=torch.float64) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (shipped with the package, loaded offline), two classes,
    pixels scaled to [0, 1], labels +1 for ``classes[0]`` and -1 for ``classes[1]``."""
    expect(len(classes) == 2 and classes[0] != classes[1] and all(0 <= c <= 9 for c in classes),
           expected="two different digit classes in 0..9", received=repr(classes), fix="e.g. classes=(0, 1)")
    pixels, target = _digit_arrays()
    keep = np.isin(target, classes)
    X, labels = pixels[keep] / 16.0, target[keep]
    order = np.random.default_rng(seed).permutation(len(X))[: (n or len(X))]
    y = np.where(labels[order] == classes[0], 1.0, -1.0)
    return Dataset(torch.tensor(X[order], dtype=dtype), torch.tensor(y, dtype=dtype),
                   f"digits(n={n}, classes={classes}, seed={seed})")


@functools.cache
def _digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (pixels, target), read once per process (a read costs ~25 ms, measured), read-only."""
    from sklearn.datasets import load_digits

    data = load_digits()
    data.data.flags.writeable = data.target.flags.writeable = False
    return data.data, data.target


def with_contradiction(data: Dataset) -> Dataset:
    """Append a copy of the first point with the opposite label: never separable (a negative control)."""
    X = torch.cat([data.X, data.X[:1]])
    y = torch.cat([data.y, -data.y[:1]])
    return Dataset(X, y, f"with_contradiction({data.name})")
