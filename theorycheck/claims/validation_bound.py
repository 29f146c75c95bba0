"""Claim ``validation_bound``: a validation set certifies every model of a finite family chosen
independently of it.

Kawaguchi, Kaelbling & Bengio, "Generalization in Deep Learning" (arXiv 1710.05468; Mathematical Aspects
of Deep Learning, CUP 2022), the validation-set bound: for F_val of K models chosen independently of
S_val (m samples) and a loss in [0, C], with probability >= 1 - delta over S_val, for all f in F_val,
    R[f] <= R_val[f] + C sqrt(ln(K / delta) / (2 m))                              (one-sided),
    |R_val[f] - R[f]| <= C sqrt(ln(2 K / delta) / (2 m))                           (two-sided).
Derivation: Hoeffding, P(R - R_val >= eps) <= exp(-2 m eps^2 / C^2) per model (each tail), and a union
bound over the K models (and the two tails). Checked (1) by Monte Carlo over repeated validation sets:
the frequency of repetitions with a violation must not exceed delta (exact one-sided binomial test,
scipy.stats.binomtest), and (2) for 0-1 losses of known risk, exactly: the union of the binomial tails
sum_f P(|R_val[f] - R[f]| > eps) <= delta. Choosing the family on the same validation set (reuse)
breaks independence and is caught by (1).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..core.errors import expect
from ..core.kit import ClaimKit
from ..core.verdict import Verdict

SOURCE = "Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning (arXiv 1710.05468), validation-set bound"
SIDES = ("two", "one")


def epsilon(K: int, m: int, delta: float, C: float = 1.0, sided: str = "two") -> float:
    """The bound's width: C sqrt(ln(2K/delta) / (2m)) (two-sided) or C sqrt(ln(K/delta) / (2m)) (one-sided)."""
    return C * math.sqrt(math.log((2 if sided == "two" else 1) * K / delta) / (2 * m))


def exact_union_tail(risks: np.ndarray, m: int, eps: float, sided: str = "two") -> float:
    """sum_f P(R_val[f] < R[f] - eps) (+ P(R_val[f] > R[f] + eps)) for 0-1 losses: R_val[f] = Binomial(m, R[f]) / m."""
    from scipy.stats import binom

    lower = binom.cdf(np.ceil(m * (risks - eps) - 1e-9) - 1, m, risks)
    upper = binom.sf(np.floor(m * (risks + eps) + 1e-9), m, risks) if sided == "two" else 0.0
    return float(np.sum(lower + upper))


ALPHA = 1e-3  # level of the binomial test of the violation frequency


def _critical_count(repeats: int, delta: float, alpha: float) -> int | None:
    """The smallest count V with P(Binomial(repeats, delta) >= V) < alpha (None: no count rejects). The tail
    falls with V, so the counts that reject are those from V on: found next to scipy's inverse survival
    function, and by scanning every count where the window does not start below V."""
    from scipy.stats import binom

    def first_rejecting(counts):
        rejecting = counts[binom.sf(counts - 1, repeats, delta) < alpha]
        return int(rejecting[0]) if rejecting.size else None

    guess = int(binom.isf(alpha, repeats, delta)) + 1
    window = np.arange(max(guess - 3, 0), min(guess + 3, repeats) + 1)
    found = first_rejecting(window)
    if found is not None and (found > window[0] or window[0] == 0):
        return found
    return first_rejecting(np.arange(repeats + 1))


def repeats_without_power(delta: float, alpha: float = ALPHA) -> int:
    """The most repetitions whose binomial test cannot reject a violation rate <= delta at level alpha: even
    R violations of R have probability delta^R >= alpha, so R = floor(ln alpha / ln delta) (at least 1;
    checked against :func:`_critical_count`, which one more repetition makes a number)."""
    repeats = max(1, math.floor(math.log(alpha) / math.log(delta)))
    while repeats > 1 and _critical_count(repeats, delta, alpha) is not None:
        repeats -= 1
    while _critical_count(repeats + 1, delta, alpha) is None:
        repeats += 1
    return repeats


EFFECT = 2.0  # the violation rate EFFECT * delta that a 'holds' must have been able to see
POWER = 1 - ALPHA  # ... with this probability


def power_against(repeats: int, delta: float, alpha: float = ALPHA, effect: float = EFFECT) -> float:
    """P(Binomial(repeats, min(1, effect delta)) >= the critical count of the level-alpha test of rate <= delta):
    the exact probability that the test rejects when the true violation rate is effect * delta (0 when no
    count rejects)."""
    from scipy.stats import binom

    critical = _critical_count(repeats, delta, alpha)
    return 0.0 if critical is None else float(binom.sf(critical - 1, repeats, min(1.0, effect * delta)))


def repeats_for_power(delta: float, alpha: float = ALPHA, power: float = POWER, effect: float = EFFECT) -> int:
    """The fewest repetitions from which on (checked over the next 50: the binomial's discreteness makes the
    power saw-toothed) the test of rate <= delta at level alpha rejects rate effect * delta with probability
    >= power."""
    low, high = 1, 2
    while power_against(high, delta, alpha, effect) < power:
        low, high = high, 2 * high
    while high - low > 1:  # the first count with enough power, then past the saw teeth
        mid = (low + high) // 2
        low, high = (low, mid) if power_against(mid, delta, alpha, effect) >= power else (mid, high)
    while any(power_against(high + k, delta, alpha, effect) < power for k in range(50)):
        high += 1
    return high


kit = ClaimKit(
    id="validation_bound",
    statement="For K models chosen independently of a validation set of m samples and losses in [0, C], with "
              "probability >= 1 - delta every model has |R_val[f] - R[f]| <= C sqrt(ln(2K/delta)/(2m)) "
              "(one-sided: R[f] <= R_val[f] + C sqrt(ln(K/delta)/(2m))).",
    source=SOURCE,
    assumptions={"range": "losses observed in [0, C]"},
    tolerance=f"exact one-sided binomial test of the violation frequency against delta (level alpha = {ALPHA:g}); "
              f"'holds' only when it had power >= {POWER:g} against a violation rate {EFFECT:g} delta at this number "
              "of repetitions (exact binomial), else inconclusive",
)


@kit.checker
def check_validation_bound(true_risks, val_losses, *, delta: float, C: float = 1.0, m: int | None = None,
                           loss_range=None, sided: str = "two", alpha: float = ALPHA, zero_one: bool | None = None,
                           power: float = POWER, effect: float = EFFECT, risk_error: float = 0.0,
                           seed: int | None = None) -> Verdict:
    """Check the bound on repeated validation sets.

    ``val_losses``: per-sample losses, shape (repeats, K, m), or validation risks (repeats, K) with ``m``
    and the observed ``loss_range`` (lo, hi) given (``zero_one=True`` if they are 0-1 losses); ``true_risks``: (K,) for a fixed family or
    (repeats, K) when the family changes per repetition (as under reuse). ``violated`` when the exact
    binomial test rejects "violation rate <= delta" at level ``alpha``; for a fixed family of 0-1 losses
    the exact union of binomial tails is also required to be <= delta. Not rejecting is ``holds`` only if the
    test had power >= ``power`` (default 1 - alpha) against a violation rate ``effect`` * delta (default 2 delta)
    at this number of repetitions (exact binomial, :func:`power_against`); otherwise ``inconclusive``, naming
    the repetitions needed (:func:`repeats_for_power`). ``risk_error``: how far the true risks given may be
    from the exact ones (estimated on a reference sample, :func:`validation_runs`): a repetition counts as a
    violation for ``violated`` only beyond eps + risk_error, and as a possible one for ``holds`` beyond
    eps - risk_error; a verdict the two counts disagree on is inconclusive.
    """
    losses = np.asarray(val_losses, dtype=np.float64)
    risks = np.asarray(true_risks, dtype=np.float64)
    expect(losses.ndim in (2, 3) and losses.size > 0, expected="non-empty val_losses of shape (repeats, K, m) or "
           "(repeats, K)", received=f"shape {losses.shape}", fix="stack the validation losses of every repetition")
    expect(0 < delta < 1 and 0 < alpha < 1 and C > 0, expected="0 < delta < 1, 0 < alpha < 1, C > 0",
           received=f"delta={delta!r}, alpha={alpha!r}, C={C!r}", fix="e.g. delta=0.05, alpha=1e-3, C=1")
    expect(sided in SIDES, expected=f"sided in {SIDES}", received=repr(sided), fix="sided='two'")
    expect(0 < power < 1 and effect > 1, expected="0 < power < 1 and effect > 1", received=f"power={power!r}, "
           f"effect={effect!r}", fix="power=1 - alpha, effect=2 (a violation rate 2 delta must be seen)")
    expect(risk_error >= 0, expected="risk_error >= 0 (the error of the true risks given)", received=repr(risk_error),
           fix="risk_error=0.0 for exact risks, validation_runs(...)['risk_error'] for estimated ones")
    repeats, K = losses.shape[:2]
    expect(risks.shape in ((K,), (repeats, K)), expected=f"true_risks of shape ({K},) or ({repeats}, {K})",
           received=f"shape {risks.shape}", fix="one true risk per model (per repetition if the family changes)")
    if losses.ndim == 3:
        m, observed = losses.shape[2], (float(np.min(losses)), float(np.max(losses)))
        val = losses.mean(axis=2)
        zero_one = bool(np.isin(losses, (0.0, 1.0)).all()) if zero_one is None else zero_one
    else:
        expect(m is not None and m >= 1 and loss_range is not None, expected="m and loss_range with (repeats, K) "
               "validation risks", received=f"m={m!r}, loss_range={loss_range!r}",
               fix="pass m=len(validation set), loss_range=(min loss, max loss) observed")
        # the declared range, widened by what the risks show: a mean outside it contradicts the declaration
        seen = np.concatenate([losses.reshape(-1), risks.reshape(-1)])
        seen = seen[np.isfinite(seen)]
        val, zero_one = losses, bool(zero_one)
        observed = (float(min(loss_range[0], seen.min(initial=np.inf))),
                    float(max(loss_range[1], seen.max(initial=-np.inf))))
    eps = epsilon(K, m, delta, C, sided)
    finite = bool(np.isfinite(val).all() and np.isfinite(risks).all())
    gap = (risks - val) if sided == "one" else np.abs(val - risks)
    violations = int(np.sum(np.any(gap > eps + risk_error, axis=1))) if finite else 0
    possible = int(np.sum(np.any(gap > eps - risk_error, axis=1))) if finite else 0
    critical = _critical_count(repeats, delta, alpha)
    from scipy.stats import binomtest

    test = binomtest(violations, repeats, delta, alternative="greater")
    upper = float(test.proportion_ci(confidence_level=1 - alpha).high)
    exact = exact_union_tail(risks, m, eps, sided) if zero_one and risks.ndim == 1 and risk_error == 0 else math.nan
    held_mc = test.pvalue >= alpha
    blurred = held_mc and binomtest(possible, repeats, delta, alternative="greater").pvalue < alpha
    achieved = power_against(repeats, delta, alpha, effect)
    powered = achieved >= power
    held_exact = math.isnan(exact) or exact <= delta * (1 + 1e-9)
    in_range = observed[0] >= 0 and observed[1] <= C
    reasons = []
    if not in_range:
        reasons.append(f"losses observed in [{observed[0]:.3g}, {observed[1]:.3g}], outside [0, C = {C:g}]: Hoeffding "
                       "with range C does not apply")
    if not held_mc:
        reasons.append(f"{violations} of {repeats} validation sets violate the bound (rate {violations / repeats:.3g} > "
                       f"delta = {delta:g}, binomial p = {test.pvalue:.3g} < {alpha:g}): was the family chosen on the "
                       "validation set it is judged on?")
    if not held_exact:
        reasons.append(f"exact union of binomial tails {exact:.3g} > delta")
    if critical is None:
        reasons.append(f"{repeats} repetitions cannot reject a rate <= {delta:g} at level {alpha:g}: run more")
    elif held_mc and held_exact and not powered:
        reasons.append(f"not rejected, but {repeats} repetitions see a violation rate {effect:g} delta = "
                       f"{min(1.0, effect * delta):.3g} only with power {achieved:.3g} < {power:g}: run more "
                       f"(>= {repeats_for_power(delta, alpha, power, effect)} repetitions)")
    if blurred:
        reasons.append(f"{possible} of {repeats} validation sets lie beyond eps - risk_error ({risk_error:.3g}): the "
                       "error of the true risks given leaves the test undecided (a larger reference sample shrinks it)")
    if not finite:
        reasons.append("non-finite losses or risks")
    return kit.decide(
        assumptions={"range": in_range}, conclusion_held=held_mc and held_exact,
        inconclusive=not finite, undecided=held_mc and held_exact and (not powered or blurred),
        statistic=violations / repeats, bound=delta,
        tolerance=(critical / repeats - delta) if critical is not None else math.inf,
        tolerance_basis=(f"exact one-sided binomial test of H0: violation rate <= delta at level alpha = {alpha:g} "
                         f"(scipy.stats.binomtest): {critical} or more violations of {repeats} reject; power "
                         f"{achieved:.4g} against a rate {effect:g} delta (holds needs >= {power:g}); eps = "
                         f"{eps:.4g} = C sqrt(ln({'2K' if sided == 'two' else 'K'}/delta)/(2m))"
                         + (f"; true risks within risk_error = {risk_error:.3g} (violated counts gaps beyond eps + "
                            "risk_error, holds those beyond eps - risk_error; estimated by validation_runs they hold "
                            "with probability >= 1 - alpha, so a decision errs with probability <= 2 alpha)"
                            if risk_error > 0 else "")),
        details={"K": K, "m": m, "repeats": repeats, "epsilon": eps, "sided": sided, "violations": violations,
                 "possible_violations": possible, "risk_error": risk_error,
                 "p_value": float(test.pvalue), "rate_upper_confidence": upper, "critical_count": critical,
                 "level": alpha, "power": achieved, "power_required": power, "alternative_rate": min(1.0, effect * delta),
                 "exact_union_tail": exact, "loss_range": list(observed), "C": C,
                 "max_gap": float(np.max(gap)) if finite else math.nan},
        reason="; ".join(reasons))


assert_validation_bound = kit.assert_


def validation_experiment(risks, *, m: int, repeats: int, seed: int = 0, select_from: int | None = None,
                          per_sample: bool = False, scale: float = 1.0):
    """Simulated 0-1 validation losses (times ``scale``) of models with true ``risks`` on ``repeats``
    independent validation sets of size m. ``select_from=M``: the reuse control, a pool of M models of
    risk ``risks[0]`` from which the len(risks) lowest on each validation set are kept. Returns
    (true_risks, val_losses): per-sample losses (repeats, K, m) if ``per_sample``, else risks (repeats, K)."""
    rng = np.random.default_rng(seed)
    risks = np.asarray(risks, dtype=np.float64)
    if select_from is not None:
        counts = rng.binomial(m, risks[0], size=(repeats, select_from))
        kept = np.partition(counts, risks.size - 1, axis=1)[:, : risks.size]
        return np.full((repeats, risks.size), risks[0]), scale * kept / m
    if per_sample:
        return risks, scale * (rng.uniform(size=(repeats, risks.size, m)) < risks[None, :, None]).astype(np.float64)
    return risks, scale * rng.binomial(m, risks, size=(repeats, risks.size)) / m


def validation_runs(models, sample, loss, *, m: int, repeats: int, reference: int, C: float = 1.0,
                    alpha: float = ALPHA, seed: int = 0) -> dict:
    """Your family on your data: ``models`` K callables X -> predictions (nn.Modules), fixed before any
    validation set is drawn; ``sample(size, generator)`` -> (X, y) draws from your distribution with the
    torch.Generator given; ``loss(predictions, y)`` -> per-sample losses. Returns ``val_losses`` (repeats, K,
    m) on ``repeats`` independent validation sets, ``true_risks`` (K,) estimated on one more independent
    sample of size ``reference`` and ``risk_error`` = C sqrt(ln(2K / alpha) / (2 reference)) (Hoeffding with a
    union bound over the K models: every estimate is within it with probability >= 1 - alpha), the keyword
    arguments of :func:`check_validation_bound` (with ``m``)."""
    import torch

    expect(len(models) >= 1 and all(map(callable, models)) and callable(sample) and callable(loss),
           expected="models: K callables, sample(size, generator) and loss(predictions, y) callables",
           received=f"{type(models).__name__} of {len(models)}, {type(sample).__name__}, {type(loss).__name__}",
           fix="validation_runs([model_a, model_b], sample, loss, m=..., repeats=..., reference=...)")
    expect(m >= 1 and repeats >= 1 and reference >= 1, expected="m, repeats, reference >= 1",
           received=f"m={m!r}, repeats={repeats!r}, reference={reference!r}", fix="e.g. m=100, reference=100 * m")
    generator = torch.Generator().manual_seed(int(seed))

    def losses(size: int) -> np.ndarray:
        X, y = sample(size, generator)
        with torch.no_grad():
            rows = [torch.as_tensor(loss(model(X), y)).detach().reshape(-1) for model in models]
        expect(all(r.numel() == size for r in rows), expected=f"loss(predictions, y) -> {size} per-sample losses",
               received=str([r.numel() for r in rows]), fix="return one loss per sample (reduction='none')")
        return torch.stack(rows).double().cpu().numpy()

    true_risks = losses(reference).mean(axis=1)
    val_losses = np.stack([losses(m) for _ in range(repeats)])
    return {"true_risks": true_risks, "val_losses": val_losses, "m": m,
            "risk_error": C * math.sqrt(math.log(2 * len(models) / alpha) / (2 * reference))}


# --- audit cases ---------------------------------------------------------------------------------

CONTROLS = {"reuse": "violated", "loss-out-of-range": "vacuous", "too-few-repeats": "inconclusive"}


@dataclasses.dataclass(frozen=True)
class ValidationCase:
    """One simulated family and its repeated validation sets; rebuilt from these fields alone."""

    K: int = 20
    m: int = 200
    repeats: int = 2000  # at least; an instance raises them to what the power against 2 delta needs
    delta: float = 0.05
    sided: str = "two"
    seed: int = 0
    control: str | None = None
    claim: str = "validation_bound"

    @property
    def n(self) -> int:
        return self.K * self.m

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        risks = np.random.default_rng(self.seed).uniform(0.05, 0.5, size=self.K)
        common = dict(m=self.m, seed=self.seed)
        if self.control == "reuse":  # the K <= 5 best of 40 K / delta models of risk 1/2 on the same validation set:
            K = min(self.K, 5)         # about one of them lies beyond eps (the exact tails are ~ delta / (30 K))
            true, val = validation_experiment(np.full(K, 0.5), select_from=math.ceil(40 * K / self.delta),
                                              repeats=min(self.repeats, 300), **common)
        elif self.control == "too-few-repeats":  # the most repetitions that cannot reject at this delta
            true, val = validation_experiment(risks, repeats=repeats_without_power(self.delta), **common)
        else:
            # at least the repetitions that give the test its power against a rate 2 delta (repeats_for_power)
            true, val = validation_experiment(risks, repeats=max(self.repeats, repeats_for_power(self.delta)),
                                              **common)
        scale = 4.0 if self.control == "loss-out-of-range" else 1.0  # a squared loss in [0, 4] declared C = 1
        true, val = (np.asarray(v * scale, dtype=dtype) for v in (true, val))  # in the audit's dtype
        return check_validation_bound(true, val, delta=self.delta, m=self.m, sided=self.sided,
                                      loss_range=(0.0, scale), zero_one=scale == 1.0, seed=self.seed)


def random_case(claim: str, rng: np.random.Generator, control: str | None = None) -> ValidationCase:
    """K in [2, 50] models, m in [50, 500], 500-3000 repetitions (an instance runs at least the count that
    gives the test its power against a rate 2 delta, :func:`repeats_for_power`), delta in [0.01, 0.2], one- or
    two-sided."""
    K, m, repeats = int(rng.integers(2, 51)), int(rng.integers(50, 501)), int(rng.integers(500, 3001))
    return ValidationCase(K=K, m=m, repeats=repeats, delta=float(rng.uniform(0.01, 0.2)),
                          sided=SIDES[int(rng.integers(2))], seed=int(rng.integers(2**31)), control=control)


kit.dataclass_cases(random_case, CONTROLS)
