"""A loss L(theta) = sum_n l(f(theta; x_n), y_n) of any module (default the squared loss
1/2 ||f - y||^2), its Hessian, Jacobian and the Gauss-Newton term J^T D J (D = d^2 L / df^2), as full
matrices or as Hessian-vector products (torch.func), with the entrywise roundoff bound of each (a record,
never a verdict). H = J^T D J + sum_n g_n . d^2 f_n, g = dL/df: at a point where every g_n = 0
(interpolation, for the squared loss) H = J^T D J.

Everything is evaluated on a float64 copy of the module (the float32 weights and inputs exactly), so the
roundoff is float64's whatever the model's dtype; only the output gradient g that a stationary point may
leave is the model's own dtype's (it fits in its own arithmetic). The bound is Higham's: an entry computed
from K-term sums errs by at most gamma_K times the same sums of absolute values; those are the derivatives
of the absolute network f_abs(theta) = f(|theta|; |x|) (every weight, bias and input by its absolute value),
which dominates the absolute sums of a network of linear maps and activations with |a(z)| <= a(|z|) and
|a'| <= 1 (ReLU, LeakyReLU, linear); the measured |J| is taken where it is larger (other activations).
"""

from __future__ import annotations

import copy
import math

import torch
from torch.func import functional_call, hessian, jacrev, jvp, vjp

from ..core.devices import gamma, unit_roundoff
from ..core.errors import expect

REFERENCE = torch.float64


def squared(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1/2 ||f(x_n) - y_n||^2 per sample."""
    return 0.5 * ((outputs - y) ** 2).sum(-1)


class LossLandscape:
    """The loss of ``model`` on (X, y) (``loss(outputs, y)``: per-sample losses or their sum; default the
    squared loss) as a function of the flat vector theta of its trainable parameters (registration order:
    ``model.named_parameters()``), on a float64 copy of the module."""

    def __init__(self, model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, loss=None):
        self.loss_fn = squared if loss is None else loss
        self.model = copy.deepcopy(model).to(REFERENCE)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.buffers = {n: b.detach() for n, b in self.model.named_buffers()}
        self.X = X.detach().to(REFERENCE)
        with torch.no_grad():
            out = self.outputs(self.theta)
        if loss is None:
            expect(y.numel() == out.numel(), expected=f"y with one target per output: {tuple(out.shape)} (samples, "
                   "outputs)", received=f"y of shape {tuple(y.shape)}", fix="y shaped like model(X)")
        shaped = y.is_floating_point() and y.numel() == out.numel()  # a target per output (its rounding counts)
        self.y = y.detach().to(REFERENCE).reshape(out.shape) if shaped else y.detach()
        self.y_rounding = self.y.reshape(-1).abs() if shaped else torch.zeros(out.numel(), dtype=REFERENCE,
                                                                                device=out.device)
        self.nk = out.numel()  # samples x outputs
        self.K = 2 * self.dot_product_terms() + self.nk + 4
        self.u = unit_roundoff(REFERENCE)
        self.g = gamma(self.K, REFERENCE)
        self.g_model, self.u_model = gamma(self.K, dtype), unit_roundoff(dtype)  # the model's own evaluation

    @property
    def theta(self) -> torch.Tensor:
        params = dict(self.model.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    @property
    def P(self) -> int:
        return sum(self.sizes)

    def dot_product_terms(self) -> int:
        """The summed fan-in of the weight tensors plus their number: the longest chain of sums in f."""
        return sum(math.prod(s[1:]) for s in self.shapes if len(s) >= 2) + len(self.shapes)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.reshape(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes)}

    def blocks(self, module_name: str, kinds=("weight", "bias")) -> torch.Tensor:
        """A boolean mask over theta: the parameters ``kinds`` owned directly by the submodule ``module_name``."""
        prefix = f"{module_name}." if module_name else ""
        mask = [torch.full((size,), name.startswith(prefix) and name[len(prefix):] in kinds, dtype=torch.bool)
                for name, size in zip(self.names, self.sizes)]
        return torch.cat(mask).to(self.X.device)

    def outputs(self, theta: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        """f(theta; X) as an (n, k) matrix (buffers copied: a BatchNorm's statistics are not changed)."""
        X = self.X if X is None else X
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        out = functional_call(self.model, (self.unflatten(theta), buffers), (X,))
        return out.reshape(X.shape[0], -1)

    def abs_outputs(self, theta_abs: torch.Tensor) -> torch.Tensor:
        """The absolute network f(|theta|; |X|) at a nonnegative theta_abs."""
        return self.outputs(theta_abs, self.X.abs())

    def total(self, outputs: torch.Tensor) -> torch.Tensor:
        """L as a function of the (n, k) outputs."""
        value = torch.as_tensor(self.loss_fn(outputs, self.y))
        expect(value.numel() in (1, outputs.shape[0]), expected=f"loss(outputs, y) -> {outputs.shape[0]} per-sample "
               "losses or their sum", received=f"shape {tuple(value.shape)}", fix="return one loss per sample")
        return value.sum()

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        return self.total(self.outputs(theta))

    def output_terms(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, D): dL/df flattened (n k,) and d^2 L / df^2 (n k, n k) at theta's outputs."""
        with torch.no_grad():
            out = self.outputs(theta)
        return (torch.func.grad(self.total)(out).reshape(-1),
                hessian(self.total)(out).reshape(out.numel(), out.numel()))

    def residuals(self, theta: torch.Tensor) -> torch.Tensor:
        """g = dL/df (f - y for the squared loss)."""
        return self.output_terms(theta)[0]

    def allowed_residual(self, theta: torch.Tensor) -> torch.Tensor:
        """|D| rho, rho_n = 2 gamma_K f_abs,n + u |y_n| in the model's dtype: the output gradient that rounding
        alone can leave at a point stationary in the model's own arithmetic (the forward error of f and the
        rounding of y, through the loss's curvature; for the squared loss D = I)."""
        with torch.no_grad():
            f_abs = self.abs_outputs(theta.abs()).abs().reshape(-1)
        return self.output_terms(theta)[1].abs() @ (2 * self.g_model * f_abs + self.u_model * self.y_rounding)

    # --- full matrices (P x P) ------------------------------------------------------------------

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        return jacrev(lambda t: self.outputs(t).reshape(-1))(theta)

    def abs_jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        """Entrywise the larger of the absolute network's Jacobian at |theta| and |J|."""
        J_abs = jacrev(lambda t: self.abs_outputs(t).reshape(-1))(theta.abs()).abs()
        return torch.maximum(J_abs, self.jacobian(theta).abs())

    def weighted_abs_hessian(self, theta: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_n w_n d^2 f_abs,n at |theta| (w >= 0): it dominates sum_n w_n |d^2 f_n| entrywise."""
        return hessian(lambda t: (weights * self.abs_outputs(t).reshape(-1)).sum())(theta.abs()).abs()

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        return hessian(self.loss)(theta)

    def residual_term(self, theta: torch.Tensor) -> torch.Tensor:
        """sum_n r_n d^2 f_n (r fixed at theta): H - J^T J."""
        r = self.residuals(theta)
        return hessian(lambda t: (r * self.outputs(t).reshape(-1)).sum())(theta)

    def gauss_newton(self, theta: torch.Tensor) -> torch.Tensor:
        J = self.jacobian(theta)
        return J.T @ self.output_terms(theta)[1] @ J

    def bound(self, theta: torch.Tensor) -> torch.Tensor:
        """Entrywise roundoff bound of H (and of J^T D J): 2 gamma_K (J_abs^T |D| J_abs + sum_n |g_n| d^2 f_abs,n) +
        sum_n rho_n d^2 f_abs,n, rho the output gradient rounding allows."""
        J_abs = self.abs_jacobian(theta)
        g, D = self.output_terms(theta)
        weights = 2 * self.g * g.abs() + self.allowed_residual(theta)
        return 2 * self.g * J_abs.T @ D.abs() @ J_abs + self.weighted_abs_hessian(theta, weights)

    # --- matrix-free: products with a block of vectors V (P x p) -------------------------------------

    def hvp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """H V by forward-over-reverse differentiation, one column at a time."""
        grad = torch.func.grad(self.loss)
        return torch.stack([jvp(grad, (theta,), (v,))[1] for v in V.T], dim=1)

    def gauss_newton_vp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """J^T D J V: a Jacobian-vector product, D, then a vector-Jacobian product."""
        f = lambda t: self.outputs(t).reshape(-1)
        _, pull = vjp(f, theta)
        D = self.output_terms(theta)[1]
        return torch.stack([pull(D @ jvp(f, (theta,), (v,))[1])[0] for v in V.T], dim=1)

    def bound_vp(self, theta: torch.Tensor, V_abs: torch.Tensor) -> torch.Tensor:
        """The entrywise bound of :meth:`bound` applied to nonnegative vectors, matrix-free (it bounds
        |H V - (H V)_computed| entrywise)."""
        f_abs = lambda t: self.abs_outputs(t).reshape(-1)
        g, D = self.output_terms(theta)
        weights = 2 * self.g * g.abs() + self.allowed_residual(theta)
        t_abs = theta.abs()
        _, pull = vjp(f_abs, t_abs)
        grad_w = torch.func.grad(lambda t: (weights * f_abs(t)).sum())
        columns = []
        for v in V_abs.T:
            JtJ = pull(D.abs() @ jvp(f_abs, (t_abs,), (v,))[1])[0]
            columns.append(2 * self.g * JtJ.abs() + jvp(grad_w, (t_abs,), (v,))[1].abs())
        return torch.stack(columns, dim=1)
