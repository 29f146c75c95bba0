"""The claim kit: a claim is declared once, in one file, and the kit does the bookkeeping.

    kit = ClaimKit(id="my_claim", statement="...", source="Author, Venue year, Thm N",
                   assumptions={"no_bias": "the network has no bias parameters"}, tolerance="4 u |f|")

    @kit.checker                     # registered in theorycheck.CLAIMS, kit.assert_ made from it
    def check_my_claim(model, x) -> Verdict:
        return kit.decide(assumptions={"no_bias": ...},
                          comparisons=[comparison("residual", measured=r, bound=0.0, tolerance=t, basis="4 u |f|")])

    @kit.instances                   # seeded audit instances, expected to hold
    def instances(rng, device, dtype) -> Case: ...

    @kit.control("with_bias", expect="vacuous")
    def with_bias(rng, device, dtype) -> Case: ...

A claim whose cases are frozen dataclasses (fields that rebuild the instance, ``.verdict(device=, dtype=)``,
``.n`` a size) registers them in one call: ``kit.dataclass_cases(make, {"control": "expected status"})`` with
``make(claim_id, rng, control_or_None)``; their reproduce line is the dataclass itself.
``ClaimKit(..., streams_from="other_claim")`` draws each case from the other claim's stream of the same
name: a claim checking the other's runs (kkt on the margin claim's flows) then shares them.
``@kit.control(name, expect=..., on_instance=True)`` draws control k from the stream of instance k: a control
that re-reads an instance's run (its arms swapped, say) then shares that run.

The kit names the audit cases, derives each case's random stream from (audit seed, claim, case name),
writes the reproduce line, refuses observed assumptions that the claim did not declare (in ``decide`` and
in every verdict its checker returns), and makes the verdict's headline numbers the deciding comparison, so
statistic/bound/tolerance always explain the status.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from .comparisons import comparison, headline
from .errors import InvalidArgument
from .registry import AuditCase, Claim, case_seed, register, register_battery_check
from .verdict import Verdict, reported, require_holds

__all__ = ["KITS", "Case", "ClaimKit", "case_line", "case_seed", "comparison"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated audit case: ``run()`` returns the verdict; ``size`` is a size measure (parameters);
    ``reproduce``: a Python line rebuilding it from its fields (default: the kit's line by case name)."""

    run: Callable[[], Verdict]
    size: int = 0
    reproduce: str | None = None


CaseMaker = Callable[[np.random.Generator, str, str], Case]
KITS: dict[str, "ClaimKit"] = {}  # claim id -> its kit, for reproduce lines


@dataclasses.dataclass
class ClaimKit:
    """A claim's declaration; its methods register the checker, the audit cases and the battery check."""

    id: str
    statement: str
    source: str
    assumptions: Mapping[str, str]  # key -> the assumption's text
    tolerance: str
    streams_from: str | None = None  # derive case streams from this claim's id: cases that share its runs
    check: Callable[..., Verdict] | None = None
    assert_: Callable[..., Verdict] | None = None
    _instances: CaseMaker | None = None
    _controls: dict[str, tuple[CaseMaker, frozenset[str], bool]] = dataclasses.field(default_factory=dict)

    def decide(self, *, assumptions: Mapping[str, bool], comparisons: Sequence[dict] = (),
               inconclusive: bool = False, undecided: bool = False, **fields) -> Verdict:
        """A verdict of this claim. ``assumptions`` maps declared keys to whether each was observed to
        hold; ``comparisons`` are the conclusion's parts (:func:`theorycheck.core.comparisons.comparison`); with
        none (nothing could be measured) the verdict must be inconclusive or vacuous. ``inconclusive`` and
        ``undecided`` as in :meth:`theorycheck.core.verdict.Verdict.decide`."""
        unknown = sorted(set(assumptions) - set(self.assumptions))
        if unknown:
            close = {key: difflib.get_close_matches(key, list(self.assumptions), n=1) for key in unknown}
            hint = "; ".join(f"{key!r}: did you mean {match[0]!r}?" for key, match in close.items() if match)
            raise InvalidArgument(f"expected assumptions declared by claim {self.id!r} ({sorted(self.assumptions)}), "
                                  f"but got {unknown}{f' ({hint})' if hint else ''}. Fix: declare them in "
                                  "ClaimKit(assumptions=...) or use a declared key.")
        observed = {self.assumptions[key]: None if held is None else bool(held) for key, held in assumptions.items()}
        details = dict(fields.pop("details", {}))
        if comparisons:
            details["comparisons"] = list(comparisons)
            fields.update(headline(list(comparisons)))
            held = fields.pop("conclusion_held")
        else:
            if not (inconclusive or undecided) and all(held is True for held in observed.values()):
                raise InvalidArgument(f"expected comparisons for a verdict of {self.id!r} whose assumptions all "
                                      "hold, but got none. Fix: pass comparisons=[comparison(...)], or "
                                      "inconclusive=True when nothing could be measured.")
            fields.setdefault("statistic", math.nan)
            fields.setdefault("bound", math.nan)
            fields.setdefault("tolerance", math.nan)
            fields.setdefault("tolerance_basis", "nothing measured")
            held = False
        return Verdict.decide(claim=self.id, assumptions=observed, conclusion_held=held,
                              inconclusive=inconclusive, undecided=undecided, details=details, **fields)

    def checker(self, function: Callable[..., Verdict]) -> Callable[..., Verdict]:
        """Register ``function`` as the claim's checker; ``kit.assert_`` raises ClaimViolation unless it holds."""
        declared = set(self.assumptions.values())

        @functools.wraps(function)
        def checked(*args, **kwargs) -> Verdict:
            verdict = function(*args, **kwargs)
            observed = set(verdict.assumptions) | set(verdict.details.get("undecided_assumptions", ()))
            if not observed <= declared:
                raise InvalidArgument(f"expected the assumptions declared by claim {self.id!r} ({sorted(declared)}) "
                                      f"in its verdict, but got {sorted(observed - declared)}. Fix: declare them in "
                                      "ClaimKit(assumptions=...) or drop them from the checker.")
            return verdict

        self.check = reported(checked)

        def assert_claim(*args, **kwargs) -> Verdict:
            return require_holds(self.check(*args, **kwargs))

        assert_claim.__name__ = function.__name__.replace("check_", "assert_", 1)
        assert_claim.__doc__ = f":func:`{function.__name__}`, raising ``ClaimViolation`` unless it holds."
        self.assert_ = assert_claim
        KITS[self.id] = self
        register(Claim(id=self.id, statement=self.statement, assumptions=tuple(self.assumptions.values()),
                       source=self.source, checker=self.check, tolerance=self.tolerance,
                       audit_cases=self.audit_cases))
        return self.check

    def instances(self, make: CaseMaker) -> CaseMaker:
        """Register the generator of audit instances (expected: holds)."""
        self._instances = make
        return make

    def control(self, name: str, *, expect: str | Sequence[str], on_instance: bool = False
                ) -> Callable[[CaseMaker], CaseMaker]:
        """Register a negative control and the status(es) the checker must give it. ``on_instance``: control
        k draws instance k's stream (the same generated instance, so the two can share its run)."""
        expected = frozenset([expect] if isinstance(expect, str) else expect)

        def add(make: CaseMaker) -> CaseMaker:
            self._controls[name] = (make, expected, on_instance)
            return make

        return add

    def dataclass_cases(self, make: Callable, controls: Mapping[str, str]) -> None:
        """Register instances ``make(claim_id, rng, None)`` and, per control, ``make(claim_id, rng, control)``
        (expected: ``controls[control]``): frozen dataclasses with ``.verdict(device=, dtype=)`` and ``.n``."""
        def maker(control):
            def make_case(rng, device, dtype) -> Case:
                case = make(self.id, rng, control)
                line = (f"from {type(case).__module__} import {type(case).__name__}; print({case_line(case)}"
                        f".verdict(device={device!r}, dtype={dtype!r}).summary())")
                return Case(run=lambda: case.verdict(device=device, dtype=dtype), size=case.n, reproduce=line)
            return make_case

        self.instances(maker(None))
        for control, expected in controls.items():
            self.control(control, expect=expected)(maker(control))

    def battery(self, check: Callable[..., Verdict]) -> Callable[..., Verdict]:
        """Register the battery adapter ``check(model, X, y, *, seed) -> Verdict`` for parametrize_with_claims."""
        return register_battery_check(self.id, check)

    def case(self, name: str, *, seed: int, device: str = "cpu", dtype: str = "float64") -> Verdict:
        """Rebuild and run one audit case by name (what the reproduce line calls)."""
        for case in self.audit_cases(n=_index_of(name) + 1, seed=seed, device=device, dtype=dtype):
            if case.name == name:
                return case.run()
        raise InvalidArgument(f"expected an audit case name of claim {self.id!r} such as 'instance-0' or "
                              f"'control-<name>-0', but got {name!r}. Fix: copy the name from the report.")

    def audit_cases(self, *, n: int, seed: int, device: str, dtype: str) -> Iterator[AuditCase]:
        """n instances, then the controls in turn until n controls (each case its own seeded stream)."""
        if self._instances is None:
            return
        controls = list(self._controls.items())
        for index in range(n):
            yield self._audit_case(f"instance-{index}", "instance", self._instances, frozenset({"holds"}),
                                   seed, device, dtype)
        for index in range(n if controls else 0):
            control, (make, expected, on_instance) = controls[index % len(controls)]
            yield self._audit_case(f"control-{control}-{index}", "control", make, expected, seed, device, dtype,
                                   stream=f"instance-{index}" if on_instance else None)

    def _audit_case(self, name, kind, make, expected, seed, device, dtype, stream=None) -> AuditCase:
        rng = np.random.default_rng(case_seed(seed, self.streams_from or self.id, stream or name))
        generated = make(rng, device, dtype)
        module = getattr(self.check, "__module__", "theorycheck")
        line = generated.reproduce or (f"import theorycheck, {module}; from theorycheck.core.kit import KITS; "
                                       f"print(KITS[{self.id!r}].case({name!r}, seed={seed}, device={device!r}, "
                                       f"dtype={dtype!r}).summary())")
        return AuditCase(name=name, kind=kind, expected=expected, run=generated.run, size=generated.size,
                         reproduce=line, stream=stream or name)


def case_line(case) -> str:
    """``SGDCase(claim=..., <fields that differ from the defaults>)``: a line that rebuilds a dataclass case."""
    fields = ", ".join(f"{f.name}={getattr(case, f.name)!r}" for f in dataclasses.fields(case)
                       if getattr(case, f.name) != f.default or f.name == "claim")
    return f"{type(case).__name__}({fields})"


def _index_of(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
