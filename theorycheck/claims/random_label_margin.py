"""Claim ``random_label_margin``: networks trained to zero training error on random labels have smaller
normalized margins than the same architecture and optimizer trained on the true labels (Zhang, Bengio, Hardt,
Recht & Vinyals, ICLR 2017: deep nets fit random labels; Bartlett, Foster & Telgarsky, NeurIPS 2017: margins
normalized by the network's scale separate true from random labels; Poggio et al., Theory III: the normalized
margin q_i / prod_k ||W_k||_F of a bias-free ReLU network).

For a bias-free ReLU network f = W_K s(... s(W_1 x)), q_i = y_i f(x_i) and rho = prod_k ||W_k||_F, the
normalized margin q_i / rho is unchanged when the layers are rescaled by c_k with prod c_k = 1 or all by the
same c (degree-K homogeneity), so the comparison does not depend on the scale a run happened to reach.
The statistic: for S seed pairs (a true-label run and a random-label run each), a one-sided exact sign test
on median_i(q_true) > median_i(q_random): ``holds`` if its p-value <= alpha, ``violated`` if the reverse is
significant at alpha, else ``inconclusive``. The effect size (ratio of medians) is reported, not asserted:
"orders of magnitude" is a statement about CIFAR-scale runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch
from scipy import stats

from ..generate.data import digits
from ..core.devices import dtype_name, dtype_of
from ..engines.ensemble import Ensemble, train_ensemble
from ..core.errors import expect
from ..core.kit import Case, ClaimKit, comparison
from ..core.registry import case_seed

kit = ClaimKit(
    id="random_label_margin",
    statement="Trained to zero training error on random labels, a bias-free ReLU network has a smaller median "
              "normalized margin y f(x) / prod_k ||W_k||_F than the same architecture and optimizer on the true "
              "labels (one-sided exact sign test over seed pairs).",
    source="Zhang, Bengio, Hardt, Recht & Vinyals, ICLR 2017; Bartlett, Foster & Telgarsky, NeurIPS 2017 "
           "(spectrally-normalized margin bounds); Poggio et al., Theory III (CBMM Memo 90), normalized margins",
    assumptions={"interpolates": "every run, true and random labels, reached zero training error (all q_i > 0)",
                 "finite": "the margins are finite"},
    tolerance="exact binomial sign test, one-sided at alpha (default 0.01): a false 'holds' or 'violated' has "
              "probability <= alpha; with fewer than log2(1/alpha) untied seed pairs the test cannot reach alpha: "
              "inconclusive (a limit of the run, not of the theorem)")

ALPHA = 0.01
FIT_CHECK_STEPS = 100  # the audit's runs stop at the first multiple of this with every run fitted (at most `steps`)


@kit.checker
def check_random_label_margin(true_margins, random_margins, *, alpha: float = ALPHA, seed: int | None = None):
    """``true_margins`` / ``random_margins``: (S, N) normalized margins, row s of each from seed pair s (see
    :func:`label_margin_pairs`). Sign test of median(true) > median(random) over the S pairs."""
    true, rand = (np.asarray(torch.as_tensor(m).detach().double().cpu()) for m in (true_margins, random_margins))
    expect(true.ndim == 2 and true.shape == rand.shape and true.shape[0] >= 1, expected="two (S, N) arrays of "
           "normalized margins, row s of each from seed pair s", received=f"shapes {true.shape} and {rand.shape}",
           fix="label_margin_pairs(X, y, seeds=...)")
    expect(0 < alpha < 1, expected="0 < alpha < 1", received=repr(alpha), fix="alpha=0.01")
    pairs = true.shape[0]
    finite = bool(np.isfinite(true).all() and np.isfinite(rand).all())
    errors = [float((m <= 0).mean()) for m in (true, rand)] if finite else [math.nan, math.nan]
    assumptions = {"interpolates": finite and max(errors) == 0.0, "finite": finite}
    common = dict(seed=seed, dtype=dtype_name(torch.as_tensor(true_margins).dtype))
    if not finite:
        return kit.decide(assumptions=assumptions, inconclusive=True, reason="non-finite margins", **common)
    med_true, med_rand = np.median(true, axis=1), np.median(rand, axis=1)
    wins = int((med_true > med_rand).sum())
    losses = int((med_true < med_rand).sum())
    p_holds = float(stats.binom.sf(wins - 1, wins + losses, 0.5)) if wins + losses else 1.0
    p_reverse = float(stats.binom.sf(losses - 1, wins + losses, 0.5)) if wins + losses else 1.0
    ratio = med_true / np.where(med_rand > 0, med_rand, math.nan)
    tenth = np.quantile(true, 0.1, axis=1) / np.where((q := np.quantile(rand, 0.1, axis=1)) > 0, q, math.nan)
    reasons = []
    if 0.5 ** pairs > alpha:
        reasons.append(f"{pairs} seed pairs: the sign test cannot reach p <= {alpha:g} (needs at least "
                       f"{math.ceil(math.log2(1 / alpha))} pairs)")
    if not assumptions["interpolates"]:
        reasons.append(f"training error {errors[0]:.3g} (true labels), {errors[1]:.3g} (random labels): the premise "
                       "'fits random labels' is not met")
    if p_reverse <= alpha:
        reasons.append(f"random labels have the larger median margin in {losses} of {pairs} pairs (sign test "
                       f"p = {p_reverse:.3g} <= {alpha:g})")
    elif p_holds > alpha:
        reasons.append(f"true labels win {wins} of {pairs} pairs: sign test p = {p_holds:.3g} > {alpha:g}, undecided")
    return kit.decide(
        assumptions=assumptions, undecided=p_holds > alpha and p_reverse > alpha,
        comparisons=[comparison("sign-test p-value of median(true) > median(random)", p_holds, alpha, 0.0,
                                f"exact one-sided binomial test over {wins + losses} untied seed pairs")],
        details={"pairs": pairs, "wins": wins, "losses": losses, "p_reverse": p_reverse,
                 "training_error": {"true": errors[0], "random": errors[1]},
                 "median_ratio": float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else math.nan,
                 "tenth_percentile_ratio": float(np.nanmedian(tenth)) if np.isfinite(tenth).any() else math.nan,
                 "median_true": med_true.tolist(), "median_random": med_rand.tolist()},
        reason="; ".join(reasons), **common)


assert_random_label_margin = kit.assert_


def label_margin_pairs(X: torch.Tensor, y: torch.Tensor, *, seeds, widths=(64,), lr: float = 0.008,
                       steps: int = 2000, label_seed: int = 0, check_every: int | None = None) -> dict:
    """Train, side by side, one bias-free ReLU MLP per seed on the true labels and one per seed on random +-1
    labels (GD on the summed logistic loss, same architecture, step and steps; seed s initializes both arms
    of pair s from different streams). Returns the (S, N) normalized margins of each arm, the steps trained
    and the run (with ``check_every``: its last segment). ``check_every``: train in segments of that many
    steps and stop after the first segment that ends with every run at zero training error (the iterates are
    those of one run of the same length: GD does not depend on where it is cut).
    Sized for 64 digits: in 16 random draws (7 pairs each, width 64, lr 0.008) every run had zero training
    error from step 794 on at the latest, so the audit's 1500 steps leave a factor ~2 (lr 0.012 at width 128
    left some random-label runs unfitted after 1000 steps)."""
    S, N = len(seeds), len(y)
    generator = np.random.default_rng(case_seed(label_seed, "random_label_margin", "labels"))
    random_labels = torch.as_tensor(generator.choice([-1.0, 1.0], size=(S, N)), dtype=X.dtype, device=X.device)
    labels = torch.cat([y.expand(S, N), random_labels])
    with torch.random.fork_rng(devices=[]):  # Ensemble.random seeds torch's global generator: keep the caller's
        networks = [Ensemble.random(1, (X.shape[1], *widths, 1), dtype=X.dtype, seed=case_seed(int(s), "arm", arm))
                    for arm in ("true", "random") for s in seeds]
    ensemble = Ensemble([torch.cat([net.weights[k] for net in networks]) for k in range(len(widths) + 1)])
    trained, segment = 0, steps if check_every is None else check_every
    while trained < steps:
        run = train_ensemble(ensemble, X, labels, lr=lr, steps=min(segment, steps - trained))
        trained += run.steps
        if bool((run.min_margin[-1] > 0).all()):
            break
    rho = torch.stack([W.flatten(1).norm(dim=1) for W in ensemble.weights]).prod(dim=0)
    normalized = labels * ensemble.outputs(X) / rho[:, None]
    return {"true": normalized[:S], "random": normalized[S:], "steps": trained, "run": run,
            "random_labels": random_labels}


@functools.lru_cache(maxsize=4)
def _digit_pairs(classes: tuple[int, int], data_seed: int, seeds: tuple[int, ...], steps: int, label_seed: int,
                 dtype: str) -> dict:
    """label_margin_pairs on 64 digits of two classes; cached, so that a control re-reading an instance's
    runs (``arms_swapped``, drawn from the instance's stream) does not train them again."""
    data = digits(64, classes=classes, seed=data_seed, dtype=dtype_of(dtype))
    return label_margin_pairs(data.X, data.y, seeds=seeds, steps=steps, label_seed=label_seed,
                              check_every=FIT_CHECK_STEPS)


def _case(rng, dtype: str, *, steps: int = 1500, swap: bool = False) -> Case:
    classes = tuple(int(c) for c in rng.choice(10, size=2, replace=False))
    data_seed = int(rng.integers(2**31))
    seeds = tuple(int(s) for s in rng.integers(2**31, size=7))
    label_seed = int(rng.integers(2**31))

    def run():
        pairs = _digit_pairs(classes, data_seed, seeds, steps, label_seed, dtype)
        first, second = ("random", "true") if swap else ("true", "random")
        verdict = check_random_label_margin(pairs[first], pairs[second], seed=label_seed)
        return dataclasses.replace(verdict, details={**verdict.details, "steps_trained": pairs["steps"],
                                                     "steps_allowed": steps, "fit_check_every": FIT_CHECK_STEPS})

    return Case(run=run, size=64 * 64)


@kit.instances
def digit_instances(rng, device, dtype):
    """64 digits of two random classes, 64-64-1 ReLU nets, 7 seed pairs, GD (lr 0.008, at most 1500 steps:
    stopped at the first multiple of FIT_CHECK_STEPS where every run has fitted, recorded in the details)."""
    return _case(rng, dtype)


@kit.control("stopped_early", expect="vacuous")
def stopped_early(rng, device, dtype):
    """50 steps: the runs have not reached zero training error, so the premise is not met."""
    return _case(rng, dtype, steps=50)


@kit.control("arms_swapped", expect="violated", on_instance=True)
def arms_swapped(rng, device, dtype):
    """The random-label margins of the instance of the same index passed as the true ones: the reverse
    effect must be caught (the runs are the instance's, trained once)."""
    return _case(rng, dtype, swap=True)

