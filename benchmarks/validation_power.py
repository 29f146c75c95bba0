"""Level and power of the validation_bound test, measured.

False alarms: correct instances (families of 0-1 losses with known risks, validation sets drawn
independently, the audit's generator: K in [2, 50], m in [50, 500], delta in [0.01, 0.2], one- or two-sided,
repetitions raised to the count with power 0.999 against a rate 2 delta); a 'violated' verdict is a false alarm.

Detection: the stated alternative, a violation rate of exactly-or-just-above 2 delta. One model (K = 1), one-sided;
its declared true risk is the real one r plus a shift chosen so that P(R_val < R_declared - eps) =
binom.cdf(k*, m, r) is the first attainable rate >= 2 delta (validation losses that do not estimate the risk
claimed for them, e.g. a shifted validation distribution). Detection = fraction 'violated'.

    .venv/bin/python benchmarks/validation_power.py [instances]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import binom

import theorycheck as tc
from theorycheck.claims.validation_bound import epsilon, random_case, validation_experiment


def alternative(rng: np.random.Generator, effect: float = 2.0, below: bool = False):
    """(true_risks, val_risks, m, delta, rate): one model whose declared risk makes the one-sided bound fail with
    probability ``rate``, the first attainable rate >= effect * delta (``below``: the last one < effect * delta)."""
    case = random_case("validation_bound", rng)
    m, delta, r = case.m, case.delta, float(rng.uniform(0.05, 0.5))
    eps = epsilon(1, m, delta, sided="one")
    k = int(binom.ppf(effect * delta, m, r)) - below  # smallest k with P(count <= k) >= effect delta
    declared = (k + 0.5) / m + eps  # R_val < declared - eps  <=>  count <= k
    true, val = validation_experiment(np.array([r]), m=m, repeats=case.repeats, seed=case.seed)
    return np.array([declared]), val, m, delta, float(binom.cdf(k, m, r))


def main(instances: int = 300) -> None:
    rng = np.random.default_rng(20261207)
    statuses = {}
    for i in range(instances):
        verdict = random_case("validation_bound", np.random.default_rng(rng.integers(2**63))).verdict()
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    print(f"correct instances: {instances}, statuses {statuses}, "
          f"false-alarm rate {statuses.get('violated', 0) / instances:.4f} (level alpha = 1e-3)")
    for name, effect, below in (("boundary null (rate just below delta)", 1.0, True),
                                ("alternative (rate >= 2 delta)", 2.0, False)):
        rates, statuses = [], {}
        for i in range(instances):  # the binomial test alone (zero_one=False: no exact tail from the declared risk)
            true, val, m, delta, rate = alternative(np.random.default_rng(rng.integers(2**63)), effect, below)
            verdict = tc.check_validation_bound(true, val, delta=delta, m=m, loss_range=(0, 1), zero_one=False,
                                                sided="one")
            statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
            rates.append(rate / delta)
        print(f"{name}, violation rate {min(rates):.3g}..{max(rates):.3g} x delta: {instances} instances, statuses "
              f"{statuses}, 'violated' rate {statuses.get('violated', 0) / instances:.4f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
