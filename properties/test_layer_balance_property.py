"""Property: plain SGD on any generated homogeneous network changes each D_k by exactly the eta^2
term (to roundoff); momentum, weight decay, Adam and loops that edit the gradients are reported as
breaking an assumption."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import theorycheck as tc
from theorycheck.claims.layer_balance import LOOP_CONTROLS, recorded_run
from theorycheck.generate.sampling import network_and_batch
from theorycheck.generate.strategies import network_specs
from theorycheck.claims.layer_balance import kit as balance_kit

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)

RUNS = dict(seed=st.integers(0, 2**16), batch=st.integers(2, 12), steps=st.integers(1, 25),
            lr=st.floats(1e-3, 0.2))


def _trajectory(spec, seed, batch, steps, lr, device, dtype, optimizer="sgd"):
    model, X = network_and_batch(spec, seed, batch, device, dtype)
    y = torch.where(torch.arange(batch, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    return recorded_run(model, X, y, optimizer=optimizer, lr=lr, steps=steps, batch=max(1, batch // 2), seed=seed)


@given(spec=network_specs(depth=st.integers(1, 3)), **RUNS)
def test_plain_sgd_balances_layers(spec, seed, batch, steps, lr, tc_device, tc_dtype):
    verdict = tc.check_layer_balance(_trajectory(spec, seed, batch, steps, lr, tc_device, tc_dtype))
    assert verdict.status in ("holds", "inconclusive"), verdict.summary()
    if verdict.status == "inconclusive":  # only an overflowing or a frozen (dead) run may be undecided
        assert "non-finite" in verdict.reason or "tests nothing" in verdict.reason


@given(spec=network_specs(depth=st.integers(1, 3)), optimizer=st.sampled_from(["momentum", "weight_decay", "adam"]),
       **{**RUNS, "steps": st.integers(3, 25)})
def test_non_plain_optimizers_are_flagged(spec, optimizer, seed, batch, steps, lr, tc_device, tc_dtype):
    verdict = tc.check_layer_balance(_trajectory(spec, seed, batch, steps, lr, tc_device, tc_dtype, optimizer))
    if verdict.status == "inconclusive":
        return
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["plain"]] is False, verdict.summary()


@given(spec=network_specs(depth=st.integers(1, 3)), control=st.sampled_from(sorted(LOOP_CONTROLS)),
       **{**RUNS, "steps": st.integers(3, 25)})
def test_loops_that_edit_gradients_are_flagged(spec, control, seed, batch, steps, lr, tc_device, tc_dtype):
    """An L2 penalty, per-layer or value clipping, or noise: every update is still -lr * (recorded grad),
    but the Euler sums <W_k, g_k>/d_k no longer agree (the gradient is not a loss gradient of f)."""
    model, X = network_and_batch(spec, seed, batch, tc_device, tc_dtype)
    y = torch.where(torch.arange(batch, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    verdict = tc.check_layer_balance(recorded_run(model, X, y, lr=lr, steps=steps, batch=max(1, batch // 2),
                                                  seed=seed, loop_control=control))
    if verdict.status == "inconclusive":
        return
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["euler"]] is False, verdict.summary()
