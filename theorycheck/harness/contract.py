"""The checker contract: degenerate input gets an InvalidArgument (expected / received / fix) or a verdict,
never a raw exception and never a hang; NaN, Inf, empty and zero-width inputs get an InvalidArgument or an
``inconclusive`` verdict, never a decided one.

The inputs are a claim's own: the first audit instance's checker call is recorded (its arguments), then
each tensor or array in it (at the top level, in a dataclass or a dict among the arguments) and each float
argument is replaced by a degenerate version. Works for any claim declared through a kit, the project's
and a user's (registered with ``--import``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..core.errors import InvalidArgument
from ..core.kit import KITS, recorded_calls
from ..core.registry import CLAIMS
from ..core.verdict import Verdict

# strict: the input cannot be judged, so nothing but a refusal or "inconclusive" is honest
STRICT = ("nan", "inf", "empty", "zero_width")
# lenient: valid or merely odd input (zero rows, all-zero targets, one sample fewer, an integer copy, an
# extra axis): any verdict or a refusal, never a raw exception
LENIENT = ("zero_row", "all_zero", "one_fewer", "integer", "extra_axis")
SCALAR_MUTATIONS = {"nan": math.nan, "inf": math.inf, "zero": 0.0, "negative": -1.0}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one degenerate call gave: ``ok`` whether it met the contract, and what happened."""

    claim: str
    where: str  # the argument (and field) replaced
    mutation: str
    ok: bool
    got: str


def _mutated(value: Any, mutation: str) -> Any:
    """A degenerate copy of a tensor, array or float (None where the mutation does not apply)."""
    if isinstance(value, float):
        return SCALAR_MUTATIONS.get(mutation)
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            return None
        mutated = _mutated(torch.from_numpy(value.copy()), mutation)
        return None if mutated is None else mutated.numpy()
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.ndim == 0 or value.numel() == 0:
        return None
    x = value.detach().clone()
    if mutation in ("nan", "inf"):  # at a finite entry (an entry undefined by design stays as it was)
        finite = torch.isfinite(x.reshape(-1)).nonzero().reshape(-1)
        if not len(finite):
            return None
        x.view(-1)[finite[len(finite) // 2]] = math.nan if mutation == "nan" else math.inf
        return x
    if mutation == "empty":
        return x[:0]
    if mutation == "zero_width":
        return x[..., :0] if x.ndim >= 2 else None
    if mutation == "zero_row":
        x[0] = 0
        return x
    if mutation == "all_zero":
        return torch.zeros_like(x)
    if mutation == "one_fewer":
        return x[:-1] if x.shape[0] >= 2 else None
    if mutation == "integer":
        return x.round().to(torch.int64)
    if mutation == "extra_axis":
        return x.unsqueeze(-1)
    return None


def _places(arguments: dict[str, Any]) -> Iterator[tuple[str, Any, Callable[[Any], dict[str, Any]], bool]]:
    """(where, value, rebuild, may_be_nan) for every tensor, array or float among the arguments, and for
    the tensors and arrays two levels into dataclasses and dicts (a run's records); ``rebuild(new)`` gives
    the arguments with that value replaced; ``may_be_nan``: a record its owner declares undefined by
    construction at places (``MAY_BE_UNDEFINED``), where a non-finite entry is no defect."""
    for name, value in arguments.items():
        if isinstance(value, float) and not isinstance(value, bool):
            yield name, value, lambda new, name=name: {**arguments, name: new}, False
        else:
            yield from _inner_places(value, name, lambda new, name=name: {**arguments, name: new}, 2, ())


def _inner_places(value: Any, where: str, rebuild: Callable[[Any], Any], depth: int, undefined,
                  leaf: str = "") -> Iterator[tuple]:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        yield where, value, rebuild, leaf in undefined
    elif depth and dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _inner_places(getattr(value, field.name), f"{where}.{field.name}",
                                     lambda new, obj=value, field=field.name: rebuild(
                                         dataclasses.replace(obj, **{field: new})), depth - 1,
                                     getattr(value, "MAY_BE_UNDEFINED", ()), field.name)
    elif depth and isinstance(value, dict):
        for key, inner in value.items():
            yield from _inner_places(inner, f"{where}[{key!r}]",
                                     lambda new, obj=value, key=key: rebuild({**obj, key: new}), depth - 1,
                                     undefined, str(key))


class Hang(Exception):
    """A checker call that ran past its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` after ``seconds`` (main thread only; elsewhere no limit is set)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _raise(signum, frame):
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def recorded_call(claim: str, *, seed: int = 0) -> dict[str, Any]:
    """The arguments of the checker call made by ``claim``'s first audit instance (seeded by ``seed``)."""
    kit = KITS.get(claim) if claim in CLAIMS else None  # the first look registers the claims
    if kit is None:
        raise InvalidArgument(f"expected a claim declared through a ClaimKit, but got {claim!r}. Fix: declare it "
                              "with theorycheck.ClaimKit and @kit.checker (see docs/claim-authors.md).")
    case = next(kit.audit_cases(n=1, seed=seed, device="cpu", dtype="float64"), None)
    if case is None:
        raise InvalidArgument(f"expected audit instances for claim {claim!r}, but got none. Fix: register them "
                              "with @kit.instances.")
    with recorded_calls(claim) as calls:
        case.run()
    if not calls:
        raise InvalidArgument(f"expected claim {claim!r}'s first audit instance to call its checker, but got no "
                              "call. Fix: have the instance's run() call the checker registered with @kit.checker.")
    return calls[0]


def mutations(arguments: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (place, mutation) that applies to these arguments."""
    found = []
    for where, value, _, _ in _places(arguments):
        names = SCALAR_MUTATIONS if isinstance(value, float) else STRICT + LENIENT
        found += [(where, m) for m in names if _mutated(value, m) is not None]
    return found


def call_degenerate(claim: str, arguments: dict[str, Any], where: str, mutation: str, *,
                    seconds: float = 60.0) -> Outcome:
    """Call ``claim``'s checker with the value at ``where`` replaced by its ``mutation``; judge the answer."""
    kit = KITS[claim]
    value, rebuild, may_be_nan = next((v, r, u) for w, v, r, u in _places(arguments) if w == where)
    try:
        changed = rebuild(_mutated(value, mutation))
    except InvalidArgument as refusal:  # the argument's own type refused the degenerate value
        return Outcome(claim, where, mutation, _well_formed(refusal), f"refused: {refusal}")
    except Exception as error:  # noqa: BLE001 - reported, not raised: the contract names it
        return Outcome(claim, where, mutation, False, f"raw {type(error).__name__} building it: {error}")
    strict = (mutation in STRICT or (isinstance(value, float) and mutation in ("nan", "inf"))) and not (
        may_be_nan and mutation in ("nan", "inf"))
    try:
        with _time_limit(seconds):
            verdict = kit.check(**changed)
    except InvalidArgument as refusal:
        return Outcome(claim, where, mutation, _well_formed(refusal), f"refused: {refusal}")
    except Hang as hang:
        return Outcome(claim, where, mutation, False, f"hang: {hang}")
    except Exception as error:  # noqa: BLE001 - reported, not raised: the contract names it
        return Outcome(claim, where, mutation, False, f"raw {type(error).__name__}: {error}")
    ok = isinstance(verdict, Verdict) and (verdict.status == "inconclusive" or not strict)
    return Outcome(claim, where, mutation, ok, f"verdict {getattr(verdict, 'status', verdict)!r}")


def _well_formed(refusal: InvalidArgument) -> bool:
    """An InvalidArgument in the project's three parts: expected, what came, the fix."""
    text = str(refusal)
    return "expected" in text and "Fix:" in text


def outcomes(claim: str, *, seed: int = 0, seconds: float = 60.0) -> list[Outcome]:
    """Every degenerate call of ``claim``'s checker on its first audit instance's inputs."""
    arguments = recorded_call(claim, seed=seed)
    return [call_degenerate(claim, arguments, where, mutation, seconds=seconds)
            for where, mutation in mutations(arguments)]
