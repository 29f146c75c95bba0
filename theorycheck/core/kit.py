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
import contextlib
import contextvars
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from . import provenance
from . import shrink as shrinking
from .comparisons import Comparison, comparison, headline
from .errors import InvalidArgument
from .registry import AuditCase, Claim, case_seed, register, register_battery_check
from .verdict import STATUSES, Verdict, _decide, reported, require_holds

__all__ = ["KITS", "Case", "ClaimKit", "case_line", "case_seed", "comparison"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated audit case: ``run()`` returns the verdict; ``size`` is a size measure (``size_unit``:
    parameters, or samples for the dataclass cases);
    ``reproduce``: a Python line rebuilding it from its fields (default: the kit's line by case name)."""

    run: Callable[[], Verdict]
    size: int = 0
    reproduce: str | None = None
    size_unit: str = "parameters"  # what ``size`` counts


CaseMaker = Callable[[np.random.Generator, str, str], Case]
KITS: dict[str, "ClaimKit"] = {}  # claim id -> its kit, for reproduce lines
_CALL: contextvars.ContextVar[provenance.Provenance | None] = contextvars.ContextVar("theorycheck_call", default=None)
_RECORDING: contextvars.ContextVar[tuple[str, list] | None] = contextvars.ContextVar("theorycheck_recording",
                                                                                     default=None)


@contextlib.contextmanager
def recorded_calls(claim: str) -> Iterator[list[dict]]:
    """Inside the block, the arguments of each call of ``claim``'s checker are appended to the list yielded
    (for the checker contract, which replays them with degenerate values)."""
    calls: list[dict] = []
    token = _RECORDING.set((claim, calls))
    try:
        yield calls
    finally:
        _RECORDING.reset(token)


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
    # name -> (make, expected, on_instance, (strategy, build) of a strategy-drawn control or None)
    _controls: dict[str, tuple[CaseMaker, frozenset[str], bool, tuple | None]] = dataclasses.field(default_factory=dict)
    _strategy: tuple[Callable, Callable] | None = None  # (strategy(device, dtype), build(params, device, dtype))

    def decide(self, *, assumptions: Mapping[str, bool | None], comparisons: Sequence[Comparison] = (),
               inconclusive: bool = False, undecided: bool = False, conclusion_held: bool | None = None,
               device: str | None = None, dtype: str | None = None, seed: int | None = None, **fields) -> Verdict:
        """The one road to a verdict of this claim. ``assumptions`` maps declared keys to whether each was
        observed to hold (None: undecided); ``comparisons`` are the conclusion's parts
        (:func:`theorycheck.core.comparisons.comparison`; a part that holds only against an infinite bound or
        tolerance leaves the conclusion undecided), or, for a conclusion that is not a comparison (a
        test's decision), ``conclusion_held`` with ``statistic``, ``bound``, ``tolerance`` and
        ``tolerance_basis``; with neither (nothing could be measured) the verdict must be inconclusive or
        vacuous. ``inconclusive`` and ``undecided`` as in :mod:`theorycheck.core.verdict`. Provenance (claim,
        device, dtype, seed, versions) is the checker call's (:func:`theorycheck.core.provenance.of_call`);
        ``device``/``dtype``/``seed`` given here name what ran where the call's inputs do not say it."""
        unknown = sorted(set(assumptions) - set(self.assumptions))
        if unknown:
            close = {key: difflib.get_close_matches(key, list(self.assumptions), n=1) for key in unknown}
            hint = "; ".join(f"{key!r}: did you mean {match[0]!r}?" for key, match in close.items() if match)
            raise InvalidArgument(f"expected assumptions declared by claim {self.id!r} ({sorted(self.assumptions)}), "
                                  f"but got {unknown}{f' ({hint})' if hint else ''}. Fix: declare them in "
                                  "ClaimKit(assumptions=...) or use a declared key.")
        wrong = [type(c).__name__ for c in comparisons if not isinstance(c, Comparison)]
        if wrong:
            raise InvalidArgument(f"expected comparisons of claim {self.id!r} made by comparison(...), but got "
                                  f"{wrong}. Fix: comparisons=[comparison(name, measured, bound, tolerance, basis)].")
        observed = {self.assumptions[key]: None if held is None else bool(held) for key, held in assumptions.items()}
        details = dict(fields.pop("details", {}))
        if comparisons:
            details["comparisons"] = [c.to_dict() for c in comparisons]
            fields.update(headline(list(comparisons)))
            held = fields.pop("conclusion_held")
            unbounded = [c.name for c in comparisons if c.held and not math.isfinite(c.bound + c.tolerance)]
            if unbounded:  # a part "held" against an infinite allowance tested nothing
                undecided = True
                details["unbounded_comparisons"] = unbounded
        elif conclusion_held is not None:
            missing = sorted({"statistic", "bound", "tolerance", "tolerance_basis"} - set(fields))
            if missing:
                raise InvalidArgument(f"expected statistic, bound, tolerance and tolerance_basis with "
                                      f"conclusion_held in a verdict of {self.id!r}, but got no {missing}. Fix: "
                                      "pass them, or comparisons=[comparison(...)].")
            held = conclusion_held
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
        ran = _CALL.get() or provenance.outside_call()
        verdict = _decide(claim=self.id, assumptions=observed, conclusion_held=held, inconclusive=inconclusive,
                          undecided=undecided, details=details, device=device or ran.device,
                          dtype=dtype or ran.dtype, seed=ran.seed if seed is None else int(seed),
                          versions=provenance.versions(), **fields)
        object.__setattr__(verdict, "_decided_by", self.id)  # what the checker wrapper asks for
        return verdict

    def checker(self, function: Callable[..., Verdict] | None = None, *, samples: Sequence[str] = (),
                finite: Sequence[str] = (), indices: Sequence[str] = (), unbounded: Sequence[str] = ()):
        """Register ``function`` as the claim's checker (``@kit.checker`` or ``@kit.checker(samples=...)``);
        ``kit.assert_`` raises ClaimViolation unless it holds. Before it runs, the input guard
        (:func:`theorycheck.core.inputs.guard_inputs`) checks the arguments named in ``samples`` (one row
        per sample, shared first axis), ``finite`` (non-empty; non-finite entries make the verdict
        inconclusive without running the check), ``indices`` (integers allowed) and every float argument
        (finite, unless ``unbounded`` names it). Its verdict must come from :meth:`decide` of this kit."""
        if function is None:
            return functools.partial(self.checker, samples=tuple(samples), finite=tuple(finite),
                                     indices=tuple(indices), unbounded=tuple(unbounded))
        declared = set(self.assumptions.values())
        signature = inspect.signature(function)

        @functools.wraps(function)
        def checked(*args, **kwargs) -> Verdict:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as error:
                raise InvalidArgument(f"expected the arguments of {function.__name__}{signature}, but got "
                                      f"{error}. Fix: call it as documented (help({function.__name__})).") from None
            bound.apply_defaults()
            from .inputs import guard_inputs

            recording = _RECORDING.get()
            if recording is not None and recording[0] == self.id:
                recording[1].append(dict(bound.arguments))
            non_finite = guard_inputs(self.id, bound.arguments, samples=samples, finite=finite, indices=indices,
                                      unbounded=unbounded)
            token = _CALL.set(provenance.of_call(bound.arguments))
            try:
                verdict = (self.decide(assumptions={}, inconclusive=True, reason=f"{non_finite}: nothing to decide "
                                       "on (NaN or overflow in the input)") if non_finite
                           else function(*args, **kwargs))
            finally:
                _CALL.reset(token)
            if not isinstance(verdict, Verdict) or getattr(verdict, "_decided_by", None) != self.id:
                got = type(verdict).__name__ if not isinstance(verdict, Verdict) else f"a Verdict of {verdict.claim!r} " \
                    "not decided by its kit"
                raise InvalidArgument(f"expected the checker of claim {self.id!r} ({function.__name__}) to return "
                                      f"a Verdict decided by kit.decide, but got {got}. Fix: return "
                                      f"kit.decide(...) from {function.__name__}.")
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

    def instances_from(self, strategy: Callable[[str, str], object], build: Callable[[object, str, str], Case]) -> None:
        """Register audit instances drawn from a Hypothesis strategy: ``strategy(device, dtype)`` draws an
        instance's parameters (a frozen dataclass, a tuple: what a reader needs small), ``build(params,
        device, dtype)`` turns them into a :class:`Case`. Each instance is drawn from its stream seed (the
        same on every machine); an instance whose verdict is unexpected is shrunk by Hypothesis
        (:mod:`theorycheck.core.shrink`) and the audit records the minimal one beside it."""
        self._strategy = (strategy, build)
        self.instances(_drawn_from(strategy, build))

    def strategy(self, device: str = "cpu", dtype: str = "float64"):
        """The Hypothesis strategy the audit draws this claim's instances from (for property tests:
        ``kit.instance_of(data.draw(kit.strategy(device, dtype)), device=..., dtype=...)``)."""
        if self._strategy is None:
            raise InvalidArgument(f"expected a claim whose instances come from a strategy (kit.instances_from), but "
                                  f"{self.id!r} has none. Fix: declare one with kit.instances_from(strategy, build).")
        return self._strategy[0](device, dtype)

    def instance_of(self, params, *, device: str = "cpu", dtype: str = "float64") -> Verdict:
        """Run the instance with these parameters (what a shrunk counterexample's reproduce line calls)."""
        if self._strategy is None:
            raise InvalidArgument(f"expected a claim whose instances come from a strategy (kit.instances_from), but "
                                  f"{self.id!r} has none. Fix: rebuild the case by name with kit.case(...).")
        return self._strategy[1](params, device, dtype).run()

    def _shrinker(self, drawn: tuple[Callable, Callable], stream_seed: int, device: str, dtype: str
                  ) -> Callable[[float, str], dict | None]:
        """The shrink step of one strategy-drawn instance or control (``drawn``: its (strategy, build); see
        :meth:`instances_from`): ``shrink(seconds, status)`` with the unexpected status the audit saw."""
        strategy, build = drawn

        def shrink(seconds: float, status: str) -> dict | None:
            example_seed = _example_seed(np.random.default_rng(stream_seed))  # the instance's, as drawn
            chosen = strategy(device, dtype)
            found = shrinking.shrink(chosen, example_seed, shrinking.draw(chosen, example_seed),
                                     lambda params: build(params, device, dtype).run(),
                                     keeps=lambda verdict: getattr(verdict, "status", None) == status,
                                     seconds=seconds)
            if found is None:
                return None
            case = build(found.params, device, dtype)
            return {"params": repr(found.params), "status": found.verdict.status, "size": case.size,
                    "statistic": found.verdict.statistic, "reason": found.verdict.reason,
                    "reproduce": case.reproduce or self._params_line(found.params, device, dtype),
                    "examples": found.examples, "seconds": round(found.seconds, 3), "complete": found.complete}

        return shrink

    def _params_line(self, params, device: str, dtype: str) -> str:
        module = getattr(self.check, "__module__", "theorycheck")
        kind = type(params)
        imports = f"from {kind.__module__} import {kind.__name__}; " if dataclasses.is_dataclass(params) else ""
        return (f"import theorycheck, {module}; from theorycheck.core.kit import KITS; {imports}"
                f"print(KITS[{self.id!r}].instance_of({params!r}, device={device!r}, dtype={dtype!r}).summary())")

    def instances(self, make: CaseMaker) -> CaseMaker:
        """Register the generator of audit instances (expected: holds)."""
        self._instances = make
        return make

    def control(self, name: str, *, expect: str | Sequence[str], on_instance: bool = False
                ) -> Callable[[CaseMaker], CaseMaker]:
        """Register a negative control and the status(es) the checker must give it. ``on_instance``: control
        k draws instance k's stream (the same generated instance, so the two can share its run)."""
        expected = self._expected_statuses(name, expect)

        def add(make: CaseMaker) -> CaseMaker:
            self._controls[name] = (make, expected, on_instance, None)
            return make

        return add

    def control_from(self, name: str, *, expect: str | Sequence[str], strategy: Callable[[str, str], object],
                     build: Callable[[object, str, str], Case]) -> None:
        """Register a negative control drawn from a Hypothesis strategy (as :meth:`instances_from`): a control
        whose verdict is not the expected one is shrunk to the smallest control that keeps the status it got."""
        self._controls[name] = (_drawn_from(strategy, build), self._expected_statuses(name, expect), False,
                                (strategy, build))

    def _expected_statuses(self, control: str, expect: str | Sequence[str]) -> frozenset[str]:
        expected = frozenset([expect] if isinstance(expect, str) else expect)
        wrong = sorted(expected - set(STATUSES))
        if wrong or not expected:
            close = difflib.get_close_matches(str(wrong[0]), STATUSES, n=1) if wrong else []
            raise InvalidArgument(f"expected the statuses control {control!r} of claim {self.id!r} must get, from "
                                  f"{STATUSES}, but got {wrong or 'none'}. Fix: "
                                  f"{f'did you mean {close[0]!r}?' if close else 'name one of them'}")
        return expected

    def dataclass_cases(self, make: Callable, controls: Mapping[str, str]) -> None:
        """Register instances ``make(claim_id, rng, None)`` and, per control, ``make(claim_id, rng, control)``
        (expected: ``controls[control]``): frozen dataclasses with ``.verdict(device=, dtype=)`` and ``.n``.
        Instances and controls are drawn through Hypothesis (``rng`` a
        :class:`~theorycheck.core.shrink.HypothesisRng`: the same generator, now a strategy), so an unexpected
        one shrinks."""
        def case_of(case, device, dtype) -> Case:
            line = (f"from {type(case).__module__} import {type(case).__name__}; print({case_line(case)}"
                    f".verdict(device={device!r}, dtype={dtype!r}).summary())")
            return Case(run=lambda: case.verdict(device=device, dtype=dtype), size=case.n, reproduce=line,
                        size_unit="samples")

        self.instances_from(lambda device, dtype: shrinking.rng_strategy(lambda rng: make(self.id, rng, None)),
                            case_of)
        for control, expected in controls.items():
            self.control_from(control, expect=expected, build=case_of, strategy=lambda device, dtype, control=control:
                              shrinking.rng_strategy(lambda rng: make(self.id, rng, control)))

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
                                   seed, device, dtype, drawn=self._strategy)
        for index in range(n if controls else 0):
            control, (make, expected, on_instance, drawn) = controls[index % len(controls)]
            yield self._audit_case(f"control-{control}-{index}", "control", make, expected, seed, device, dtype,
                                   stream=f"instance-{index}" if on_instance else None, drawn=drawn)

    def _audit_case(self, name, kind, make, expected, seed, device, dtype, stream=None, drawn=None) -> AuditCase:
        stream_seed = case_seed(seed, self.streams_from or self.id, stream or name)
        generated = make(np.random.default_rng(stream_seed), device, dtype)
        module = getattr(self.check, "__module__", "theorycheck")
        line = generated.reproduce or (f"import theorycheck, {module}; from theorycheck.core.kit import KITS; "
                                       f"print(KITS[{self.id!r}].case({name!r}, seed={seed}, device={device!r}, "
                                       f"dtype={dtype!r}).summary())")

        def run() -> Verdict:
            with provenance.audit_seed(stream_seed):
                return generated.run()

        return AuditCase(name=name, kind=kind, expected=expected, run=run, size=generated.size,
                         size_unit=generated.size_unit,
                         reproduce=line, stream=stream or name,
                         shrink=self._shrinker(drawn, stream_seed, device, dtype) if drawn else None)


def _drawn_from(strategy: Callable[[str, str], object], build: Callable[[object, str, str], Case]) -> CaseMaker:
    """The case maker of a strategy-drawn case: its parameters drawn under the first draw of the case's stream."""
    def make(rng, device, dtype) -> Case:
        return build(shrinking.draw(strategy(device, dtype), _example_seed(rng)), device, dtype)

    return make


def _example_seed(rng: np.random.Generator) -> int:
    """The Hypothesis seed of a strategy-drawn instance: the first draw of its case's stream."""
    return int(rng.integers(2**32))


def case_line(case) -> str:
    """``SGDCase(claim=..., <fields that differ from the defaults>)``: a line that rebuilds a dataclass case."""
    fields = ", ".join(f"{f.name}={getattr(case, f.name)!r}" for f in dataclasses.fields(case)
                       if getattr(case, f.name) != f.default or f.name == "claim")
    return f"{type(case).__name__}({fields})"


def _index_of(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
