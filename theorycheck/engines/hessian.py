"""The squared loss L(theta) = 1/2 sum_n ||f(theta; x_n) - y_n||^2 of any module, its Hessian, Jacobian and
the Gauss-Newton term, as full matrices or as Hessian-vector products (torch.func), with the entrywise
roundoff bound of each (a record, never a verdict).

Everything is evaluated on a float64 copy of the module (the float32 weights and inputs exactly), so the
roundoff is float64's whatever the model's dtype; only the residual that interpolation may leave is the
model's own dtype's (it interpolates in its own arithmetic). The bound is Higham's: an entry computed from K-term sums
errs by at most gamma_K times the same sums of absolute values; those are the derivatives of the absolute
network f_abs(theta) = f(|theta|; |x|) (every weight, bias and input by its absolute value), which dominates
the absolute sums of a network of linear maps and activations with |a(z)| <= a(|z|) and |a'| <= 1 (ReLU,
LeakyReLU, linear); the measured |J| is taken where it is larger (other activations).
"""

from __future__ import annotations

import copy

import torch
from torch.func import functional_call, hessian, jacrev, jvp, vjp

from ..core.devices import gamma, unit_roundoff
from ..core.errors import expect

REFERENCE = torch.float64


class SquaredLoss:
    """The squared loss of ``model`` on (X, y) as a function of the flat vector theta of its trainable
    parameters (registration order: ``model.named_parameters()``), on a float64 copy of the module."""

    def __init__(self, model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, dtype: torch.dtype):
        self.model = copy.deepcopy(model).to(REFERENCE)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.buffers = {n: b.detach() for n, b in self.model.named_buffers()}
        self.X = X.detach().to(REFERENCE)
        with torch.no_grad():
            out = self.outputs(self.theta)
        expect(y.numel() == out.numel(), expected=f"y with one target per output: {tuple(out.shape)} (samples, outputs)",
               received=f"y of shape {tuple(y.shape)}", fix="y shaped like model(X)")
        self.y = y.detach().to(REFERENCE).reshape(out.shape)
        self.K = 2 * self.dot_product_terms() + self.y.numel() + 4
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
        return sum(int(torch.tensor(s[1:]).prod()) for s in self.shapes if len(s) >= 2) + len(self.shapes)

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

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((self.outputs(theta) - self.y) ** 2).sum()

    def residuals(self, theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (self.outputs(theta) - self.y).reshape(-1)

    def allowed_residual(self, theta: torch.Tensor) -> torch.Tensor:
        """rho_n = 2 gamma_K f_abs,n + u |y_n| in the model's dtype: the residual that rounding alone can leave
        at a point interpolating in the model's own arithmetic (the forward error of f and the rounding of y)."""
        with torch.no_grad():
            f_abs = self.abs_outputs(theta.abs()).abs().reshape(-1)
        return 2 * self.g_model * f_abs + self.u_model * self.y.reshape(-1).abs()

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

    def bound(self, theta: torch.Tensor) -> torch.Tensor:
        """Entrywise roundoff bound of H (and of J^T J): 2 gamma_K (J_abs^T J_abs + sum_n |r_n| d^2 f_abs,n) +
        sum_n rho_n d^2 f_abs,n, rho_n the residual rounding allows."""
        J_abs = self.abs_jacobian(theta)
        weights = 2 * self.g * self.residuals(theta).abs() + self.allowed_residual(theta)
        return 2 * self.g * J_abs.T @ J_abs + self.weighted_abs_hessian(theta, weights)

    # --- matrix-free: products with a block of vectors V (P x p) -------------------------------------

    def hvp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """H V by forward-over-reverse differentiation, one column at a time."""
        grad = torch.func.grad(self.loss)
        return torch.stack([jvp(grad, (theta,), (v,))[1] for v in V.T], dim=1)

    def gauss_newton_vp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """J^T J V: a Jacobian-vector product, then a vector-Jacobian product."""
        f = lambda t: self.outputs(t).reshape(-1)
        _, pull = vjp(f, theta)
        return torch.stack([pull(jvp(f, (theta,), (v,))[1])[0] for v in V.T], dim=1)

    def bound_vp(self, theta: torch.Tensor, V_abs: torch.Tensor) -> torch.Tensor:
        """The entrywise bound of :meth:`bound` applied to nonnegative vectors, matrix-free (it bounds
        |H V - (H V)_computed| entrywise)."""
        f_abs = lambda t: self.abs_outputs(t).reshape(-1)
        weights = 2 * self.g * self.residuals(theta).abs() + self.allowed_residual(theta)
        t_abs = theta.abs()
        _, pull = vjp(f_abs, t_abs)
        grad_w = torch.func.grad(lambda t: (weights * f_abs(t)).sum())
        columns = []
        for v in V_abs.T:
            JtJ = pull(jvp(f_abs, (t_abs,), (v,))[1])[0]
            columns.append(2 * self.g * JtJ.abs() + jvp(grad_w, (t_abs,), (v,))[1].abs())
        return torch.stack(columns, dim=1)
