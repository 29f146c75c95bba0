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
from ..core.inputs import require_module
from ..core.modules import read_parameters
from ..core.registry import case_seed
from ..core.threads import threads_for
from ..engines.batch_behaviour import measure_batch_behaviour
from ..engines.homogeneity import measure_homogeneity, measurement_work

kit = ClaimKit(
    id="random_label_margin",
    statement="Trained to zero training error on random labels, a bias-free ReLU network has a smaller median "
              "normalized margin y f(x) / prod_k ||W_k||_F than the same architecture and optimizer on the true "
              "labels (one-sided exact sign test over seed pairs).",
    source="Zhang, Bengio, Hardt, Recht & Vinyals, ICLR 2017; Bartlett, Foster & Telgarsky, NeurIPS 2017 "
           "(spectrally-normalized margin bounds); Poggio et al., Theory III (CBMM Memo 90), normalized margins",
    assumptions={"interpolates": "every run, true and random labels, reached zero training error (all q_i > 0)",
                 "finite": "the margins are finite",
                 "homogeneous": "every trained network is bias-free and positively 1-homogeneous in each weight layer "
                                "on X (measured), so y f(x) / prod_k ||W_k||_F does not depend on the scale a run "
                                "reached"},
    tolerance="exact binomial sign test, one-sided at alpha (default 0.01): a false 'holds' or 'violated' has "
              "probability <= alpha; with fewer than log2(1/alpha) untied seed pairs the test cannot reach alpha: "
              "inconclusive (a limit of the run, not of the theorem)")

ALPHA = 0.01
FIT_CHECK_STEPS = 100  # the audit's runs stop at the first multiple of this with every run fitted (at most `steps`)


@kit.checker
def check_random_label_margin(true_margins, random_margins=None, *, alpha: float = ALPHA, seed: int | None = None):
    """``true_margins`` / ``random_margins``: (S, N) normalized margins, row s of each from seed pair s; or the
    runs :func:`label_margin_pairs` returns as the one argument (their homogeneity, measured on each trained
    network, is then an assumption of the verdict). Sign test of median(true) > median(random) over the S pairs."""
    homogeneity = None
    if isinstance(true_margins, dict) and random_margins is None:
        expect({"true", "random"} <= set(true_margins), expected="the dict label_margin_pairs returns (keys 'true', "
               "'random')", received=f"keys {sorted(true_margins)}", fix="check_random_label_margin(label_margin_pairs(...))")
        homogeneity = true_margins.get("homogeneous")
        true_margins, random_margins = true_margins["true"], true_margins["random"]
    expect(random_margins is not None, expected="random_margins (S, N) beside true_margins", received="None",
           fix="check_random_label_margin(true, random), or pass the dict label_margin_pairs returns alone")
    true, rand = (np.asarray(torch.as_tensor(m).detach().double().cpu()) for m in (true_margins, random_margins))
    expect(true.ndim == 2 and true.shape == rand.shape and true.shape[0] >= 1, expected="two (S, N) arrays of "
           "normalized margins, row s of each from seed pair s", received=f"shapes {true.shape} and {rand.shape}",
           fix="label_margin_pairs(X, y, seeds=...)")
    expect(0 < alpha < 1, expected="0 < alpha < 1", received=repr(alpha), fix="alpha=0.01")
    pairs = true.shape[0]
    finite = bool(np.isfinite(true).all() and np.isfinite(rand).all())
    errors = [float((m <= 0).mean()) for m in (true, rand)] if finite else [math.nan, math.nan]
    assumptions = {"interpolates": finite and max(errors) == 0.0, "finite": finite}
    if homogeneity is not None:  # measured per run: False if any run is not, None if any is undecided
        runs = list(homogeneity.values())
        assumptions["homogeneous"] = False if False in runs else (None if None in runs else True)
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
    if assumptions.get("homogeneous") is not True and homogeneity is not None:
        failed = sorted(name for name, held in homogeneity.items() if held is not True)
        reasons.append(f"normalized margins of networks not measured bias-free and 1-homogeneous per layer: {failed[:4]}"
                       + (" ..." if len(failed) > 4 else "") + " (y f(x) / prod ||W_k|| then depends on the scale reached)")
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


def _random_labels(y: torch.Tensor, S: int, label_seed: int) -> torch.Tensor:
    generator = np.random.default_rng(case_seed(label_seed, "random_label_margin", "labels"))
    return torch.as_tensor(generator.choice([-1.0, 1.0], size=(S, len(y))), dtype=y.dtype, device=y.device)


def sgd_loop(lr: float = 0.05, steps: int = 500):
    """A training loop for :func:`label_margin_pairs`: full-batch GD (torch.optim.SGD) on the summed
    logistic loss, ``steps`` steps."""
    def train(model: torch.nn.Module, X: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            torch.nn.functional.softplus(-labels * model(X).reshape(-1)).sum().backward()
            optimizer.step()
    return train


def _expect_labels(X: torch.Tensor, y) -> None:
    """y: one label in {-1, +1} per row of X (the margin y f(x) and the random arm's labels are +-1)."""
    expect(isinstance(y, torch.Tensor) and y.ndim == 1 and y.shape[0] == X.shape[0], expected=f"y of shape "
           f"({X.shape[0]},): one label per row of X", received=f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}",
           fix="y.reshape(-1)")
    values = sorted(set(torch.unique(y.detach()).cpu().tolist()))
    expect(set(values) <= {-1.0, 1.0}, expected="labels in {-1, +1} (the random arm draws +-1 labels and the "
           "margin is y f(x))", received=f"label values {values[:6]}" + (" ..." if len(values) > 6 else ""),
           fix="y = 2 * y01 - 1 for {0, 1} labels, or torch.sign(y) for labels of another scale")


def _expect_one_output(net: torch.nn.Module, X: torch.Tensor) -> None:
    with torch.no_grad():
        out = net(X)
    expect(isinstance(out, torch.Tensor) and out.numel() == X.shape[0], expected=f"model() mapping X to one output "
           f"per sample ({X.shape[0]} values, shape ({X.shape[0]},) or ({X.shape[0]}, 1))",
           received=f"output {type(out).__name__} {tuple(getattr(out, 'shape', ()))}",
           fix="a binary classifier with one output: the margin is y f(x)")


def _trained_margins(net, X, row, train, homogeneous: dict, name: str) -> torch.Tensor:
    """Train ``net`` on the labels ``row``; its normalized margins, its homogeneity recorded under ``name``."""
    _expect_one_output(net, X)
    train(net, X, row.clone())
    found = read_parameters(net, X)
    expect(bool(found.weights), expected="a network with weight layers", received=f"{found.roles}",
           fix="model: a factory of the network to train")
    layers = {**found.weights, **found.frozen_weights}  # frozen layers scale f too
    # a forward that is random, changes buffers or couples samples has no per-sample f to scale
    per_sample = measure_batch_behaviour(net, X).per_sample
    homogeneous[name] = (False if found.others or not per_sample else
                         measure_homogeneity(net, X, degrees=[1.0] * len(layers)).identities_hold)
    with torch.no_grad():
        rho = math.prod(float(w.detach().norm()) for w in layers.values())
        return row * net(X).reshape(-1) / rho


def _user_pairs(X, y, seeds, model, train, label_seed) -> dict:
    """Each arm of each pair: ``model()`` under torch.manual_seed of the pair's stream, trained in place by
    ``train(net, X, labels)``; margins normalized by the product of the weight layers' Frobenius norms
    (layers read by :func:`theorycheck.core.modules.read_parameters` on X), homogeneity measured per net."""
    S = len(seeds)
    random_labels = _random_labels(y, S, label_seed)
    arms = {"true": y.expand(S, len(y)), "random": random_labels}
    margins, homogeneous = {}, {}
    with torch.random.fork_rng(devices=[X.device] if X.device.type == "cuda" else []):
        for arm, labels in arms.items():
            rows = []
            for s, row in zip(seeds, labels):
                torch.manual_seed(case_seed(int(s), "arm", arm))
                net = model()
                require_module(net, "model()")
                with threads_for(*measurement_work(net, X)):  # a small net runs faster on one thread
                    rows.append(_trained_margins(net, X, row, train, homogeneous, f"{arm}-{s}"))
            margins[arm] = torch.stack(rows).detach()
    return {**margins, "steps": None, "run": None, "random_labels": random_labels, "homogeneous": homogeneous}


def label_margin_pairs(X: torch.Tensor, y: torch.Tensor, *, seeds, model=None, train=None, widths=(64,),
                       lr: float = 0.008, steps: int = 2000, label_seed: int = 0, check_every: int | None = None) -> dict:
    """Train, side by side, one network per seed on the true labels and one per seed on random +-1 labels
    (same architecture and optimizer; seed s initializes both arms of pair s from different streams) and
    return the (S, N) normalized margins y f(x) / prod_k ||W_k||_F of each arm.

    Your own networks and loop: ``model`` a factory ``model() -> nn.Module`` (called under
    torch.manual_seed of each arm's stream), ``train(net, X, labels)`` your training loop, changing ``net``
    in place (default :func:`sgd_loop` with ``lr`` and ``steps``); each trained network's bias-freeness and
    1-homogeneity per layer are measured on X (``"homogeneous"``: run name -> True / None / False), which
    :func:`check_random_label_margin` takes as an assumption when given this dict.

    Default (no ``model``): the toolkit's bias-free ReLU MLPs of ``widths``, trained together
    (GD on the summed logistic loss, :mod:`theorycheck.engines.ensemble`); also returns the steps trained
    and the run (with ``check_every``: its last segment). ``check_every``: train in segments of that many
    steps and stop after the first segment that ends with every run at zero training error (the iterates are
    those of one run of the same length: GD does not depend on where it is cut).
    Sized for 64 digits: in 16 random draws (7 pairs each, width 64, lr 0.008) every run had zero training
    error from step 794 on at the latest, so the audit's 1500 steps leave a factor ~2 (lr 0.012 at width 128
    left some random-label runs unfitted after 1000 steps)."""
    _expect_labels(X, y)
    if model is not None:
        return _user_pairs(X, y, seeds, model, sgd_loop(lr, steps) if train is None else train, label_seed)
    expect(train is None, expected="train= with model= (your loop trains your networks)", received="train without "
           "model", fix="label_margin_pairs(X, y, seeds=..., model=make_net, train=my_loop)")
    S, N = len(seeds), len(y)
    random_labels = _random_labels(y.to(X.dtype), S, label_seed)
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

