"""The claim battery for a user's own model family, as pytest params (after scikit-learn's
``parametrize_with_checks``)::

    @tc.parametrize_with_claims(make_net, claims=["homogeneity"],
                                expected_failures={"homogeneity": "our net has biases"})
    def test_my_net(check):
        check()  # the Verdict, or ClaimViolation with the numbers

Each param builds a fresh model with ``model_factory()`` under ``torch.manual_seed(seed)``, moves it
to the device and dtype, draws data, and runs the claim's battery check; ids read
``check_homogeneity(make_net,seed=0)-cpu-float64``. Expected failures become strict xfail marks
carrying the reason (a claim that starts to hold is reported, so stale entries do not linger).
pytest is imported only when the decorator is called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ..core.errors import InvalidArgument, expect
from ..core.registry import BATTERY_CHECKS, register_battery_check  # noqa: F401  (re-exported: the battery's table)
from ..core.verdict import Verdict, require_holds

def _name(factory: Callable) -> str:
    name = getattr(getattr(factory, "func", factory), "__name__", type(factory).__name__)
    return "model_factory" if name == "<lambda>" else name


def _as_data(data, model: torch.nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` from ``data``: None (separable data sized to the first weight layer), a Dataset,
    an ``(X, y)`` pair, a tensor ``X`` (labels alternate +1/-1), or a callable ``seed -> any of those``."""
    from ..generate.data import Dataset, alternating_labels, separable
    from ..core.modules import read_parameters
    from ..core.inputs import model_device_dtype

    device, dtype = model_device_dtype(model)
    if callable(data) and not isinstance(data, torch.Tensor):
        data = data(seed)
    if data is None:
        first = next(iter(read_parameters(model).weights.values()), None)
        expect(first is not None and first.ndim == 2, expected="a model whose first weight layer is a Linear "
               "(to size the default data), or data=...", received=f"first weight of shape "
               f"{None if first is None else tuple(first.shape)}", fix="pass data=(X, y) or data=lambda seed: (X, y)")
        data = separable(16, first.shape[1], seed=seed)
    if isinstance(data, Dataset):
        data = (data.X, data.y)
    if isinstance(data, torch.Tensor):
        data = (data, alternating_labels(len(data)))
    expect(isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data),
           expected="data as None, a Dataset, a tensor X, a pair (X, y) of tensors, or a callable returning one",
           received=type(data).__name__, fix="data=lambda seed: (X, y)")
    X, y = data
    return X.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class ClaimCheck:
    """One claim on one model of the family; call it to run the check (raises ClaimViolation unless it holds)."""

    claim: str
    model_factory: Callable[[], torch.nn.Module]
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    data: Any = None

    @property
    def id(self) -> str:
        return f"check_{self.claim}({_name(self.model_factory)},seed={self.seed})-{self.device}-{self.dtype}"

    def verdict(self) -> Verdict:
        """Build the model and data, run the claim's battery check, return the Verdict (never raises on a false claim)."""
        from ..core.devices import dtype_of, resolve_device

        device, dtype = resolve_device(self.device), dtype_of(self.dtype)
        torch.manual_seed(self.seed)
        model = self.model_factory()
        expect(isinstance(model, torch.nn.Module), expected="model_factory() to return a torch.nn.Module",
               received=type(model).__name__, fix="pass a class or a function building your model")
        model = model.to(device=device, dtype=dtype)
        X, y = _as_data(self.data, model, self.seed)
        return BATTERY_CHECKS[self.claim](model, X, y, seed=self.seed)

    def __call__(self) -> Verdict:
        return require_holds(self.verdict())


def claim_checks(model_factory, *, claims: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
                 devices: Iterable[str] = ("cpu",), dtypes: Iterable[str] = ("float64",), data=None) -> list[ClaimCheck]:
    """Every (claim, seed, device, dtype) combination as a :class:`ClaimCheck` (no pytest needed)."""
    from ..core.devices import dtype_of
    from ..core.registry import CLAIMS

    runnable = [c for c in CLAIMS if c in BATTERY_CHECKS]
    claims = runnable if claims is None else ([claims] if isinstance(claims, str) else list(claims))
    bad = [c for c in claims if c not in runnable]
    if bad or not claims:
        raise InvalidArgument(f"expected claim ids with a battery check from {runnable}, but got {claims!r}"
                              f"{f' ({bad} not among them)' if bad else ''}. Fix: choose from those ids, or "
                              "register a check with theorycheck.harness.battery.register_battery_check.")
    expect(callable(model_factory) and not isinstance(model_factory, torch.nn.Module),
           expected="model_factory as a callable returning a fresh nn.Module (each check trains or probes its own)",
           received=f"{type(model_factory).__name__} instance" if isinstance(model_factory, torch.nn.Module)
           else type(model_factory).__name__, fix="pass the model class, or lambda: MyNet(...)")
    devices, dtypes = list(devices), list(dtypes)
    for device in devices:
        expect(str(device).split(":")[0] in ("cpu", "cuda"), expected="devices from cpu, cuda",
               received=repr(device), fix='devices=("cpu", "cuda")')
    for dtype in dtypes:
        dtype_of(dtype)
    return [ClaimCheck(claim, model_factory, int(seed), device, dtype, data)
            for claim in claims for seed in seeds for device in devices for dtype in dtypes]


def parametrize_with_claims(model_factory, *, claims: Iterable[str] | None = None,
                            expected_failures: Mapping[str, str] | None = None, seeds: Iterable[int] = (0,),
                            devices: Iterable[str] = ("cpu",), dtypes: Iterable[str] = ("float64",), data=None,
                            argname: str = "check"):
    """``pytest.mark.parametrize`` over :func:`claim_checks`; ``expected_failures`` maps a claim id
    to the reason it is expected not to hold for this family (a strict xfail)."""
    import pytest

    from ..core.devices import device_marks
    from ..core.errors import ClaimViolation

    checks = claim_checks(model_factory, claims=claims, seeds=seeds, devices=devices, dtypes=dtypes, data=data)
    expected_failures = dict(expected_failures or {})
    stray = sorted(set(expected_failures) - {c.claim for c in checks})
    expect(not stray, expected=f"expected_failures keyed by the claims checked {sorted({c.claim for c in checks})}",
           received=f"{stray}", fix="remove those keys, or add the claims to claims=[...]")
    params = []
    for check in checks:
        marks = device_marks(check.device)
        if check.claim in expected_failures:
            marks.append(pytest.mark.xfail(reason=expected_failures[check.claim], raises=ClaimViolation, strict=True))
        params.append(pytest.param(check, marks=marks, id=check.id))
    return pytest.mark.parametrize(argname, params)
