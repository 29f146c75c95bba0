"""Exact symbolic proofs (sympy) of the identities behind the ``homogeneity`` and balancedness claims.

On a FIXED activation pattern a bias-free ReLU / LeakyReLU / ReLU^p network is a polynomial in its
weights (each activation is a 0/1 mask, a 1/alpha slope mask, or z^p on the active units), and the
pattern is constant on an open set of weights, so identities between f and its weight gradient there
are polynomial identities that sympy can expand to exactly 0:

* Euler's theorem for homogeneous functions: f is homogeneous of degree d_k in W_k, so
  <W_k, df/dW_k> = d_k f, with d_k = p^(activations after layer k) (1 for ReLU, LeakyReLU, linear).
* Balancedness (Du, Hu & Lee, NeurIPS 2018, "Algorithmic regularization in learning deep homogeneous
  models: layers are automatically balanced"): under gradient flow W' = -dL/dW on L = sum_n l(y_n f(x_n))
  with ANY differentiable l, ||W_k||^2 - p ||W_{k+1}||^2 is conserved, and so is the per-neuron
  ||W_k[i,:]||^2 - p ||W_{k+1}[:,i]||^2 (p = power of the activation between the two layers). Du, Hu &
  Lee state p = 1 (ReLU, LeakyReLU, linear); the p-weighted form is the same argument applied to the
  rescaling symmetry (W_k[i,:], W_{k+1}[:,i]) -> (c W_k[i,:], c^-p W_{k+1}[:,i]) of ReLU^p.
* Discrete GD, W^+ = W - eta g: the same gap moves by exactly eta^2 (||g_k||^2 - p ||g_{k+1}||^2).

Layers are indexed from 0: ``layer`` k is ``net.weights[k]`` (W_{k+1} in 1-based notation).
``prove`` is sound (True only for an identically zero expression); ``witness`` evaluates an expression
at a random rational point with a concrete loss, so a non-zero value disproves an identity.
sympy is imported by this module only: ``import theorycheck`` does not load it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import sympy as sp
from sympy.core.function import AppliedUndef

from ..core.errors import expect

ACTIVATIONS = ("relu", "leaky_relu", "relu_p", "linear", "tanh")
PATTERNED = ("relu", "leaky_relu", "relu_p")


@dataclass(frozen=True)
class SymbolicNetwork:
    """A small network with symbolic weights, inputs and labels, and its exact outputs f(x_n).

    ``degrees[k]``: the degree the homogeneity claim assigns to layer k (p^(activations after it));
    it is the true degree only when ``homogeneous`` (no bias, no residual skip, no tanh).
    ``power``: the exponent p of the activation (1 unless ``relu_p``).
    """

    weights: tuple[sp.Matrix, ...]
    biases: tuple[sp.Matrix, ...]
    inputs: tuple[sp.Matrix, ...]
    labels: tuple[sp.Symbol, ...]
    outputs: tuple[sp.Expr, ...]
    degrees: tuple[int, ...]
    power: int
    homogeneous: bool
    loss: sp.FunctionClass

    @property
    def margins(self) -> tuple[sp.Expr, ...]:
        """q_n = y_n f(x_n)."""
        return tuple(y * f for y, f in zip(self.labels, self.outputs))

    @property
    def total_loss(self) -> sp.Expr:
        """L = sum_n l(q_n) for the undefined (generic) function l."""
        return sp.Add(*(self.loss(q) for q in self.margins))

    def gradient(self, layer: int) -> sp.Matrix:
        """g_k = dL/dW_k (sympy's chain rule: terms l'(q_n) y_n df_n/dW_k)."""
        total = self.total_loss
        return self.weights[layer].applyfunc(lambda w: sp.diff(total, w))


def _matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))


def _read_pattern(pattern, samples, activation, hidden_widths) -> list[list[tuple[int, ...]]]:
    """One list per sample of one 0/1 tuple per hidden layer (1 = active / positive side)."""
    if pattern is None:
        count = 1 if samples is None else samples
        expect(isinstance(count, int) and count >= 1, expected="samples >= 1", received=repr(samples),
               fix="pass samples=2 (or a pattern, one entry per sample)")
        return [[(1,) * w for w in hidden_widths] for _ in range(count)]
    expect(activation in PATTERNED, expected=f"a pattern only with activation in {PATTERNED}",
           received=f"activation={activation!r} with a pattern", fix="drop pattern and pass samples=N")
    expect(samples is None or samples == len(pattern), expected="samples equal to len(pattern)",
           received=f"samples={samples}, {len(pattern)} pattern entries", fix="omit samples")
    read = []
    for n, layers in enumerate(pattern):
        expect(len(layers) == len(hidden_widths), expected=f"{len(hidden_widths)} hidden-layer masks per sample",
               received=f"{len(layers)} for sample {n}", fix="give one 0/1 string per hidden layer, e.g. ('101', '11')")
        masks = []
        for width, mask in zip(hidden_widths, layers):
            bits = tuple(int(b) for b in mask)
            expect(len(bits) == width and set(bits) <= {0, 1}, expected=f"a 0/1 mask of length {width}",
                   received=repr(mask), fix="use a string like '101' with one bit per unit")
            masks.append(bits)
        read.append(masks)
    return read


def _activate(z: sp.Matrix, activation: str, mask: tuple[int, ...], power: int, slope: sp.Symbol) -> sp.Matrix:
    if activation == "linear":
        return z
    if activation == "tanh":
        return z.applyfunc(sp.tanh)
    if activation == "relu":
        return sp.Matrix([m * v for m, v in zip(mask, z)])
    if activation == "leaky_relu":
        return sp.Matrix([(1 if m else slope) * v for m, v in zip(mask, z)])
    return sp.Matrix([m * v**power for m, v in zip(mask, z)])  # relu_p


def symbolic_network(widths, *, activation: str = "relu", pattern=None, samples: int | None = None,
                     power: int = 2, bias: bool = False, residual: bool = False) -> SymbolicNetwork:
    """Build f(x_n) = W_L s(... s(W_1 x_n)) with symbolic entries, exactly.

    ``widths``: (input, hidden..., 1), scalar output. ``pattern``: per sample, one 0/1 string per hidden
    layer (relu: mask; leaky_relu: 1 or the symbolic slope ``alpha``; relu_p: z^power on the 1s); default
    all active. ``bias`` adds a symbolic bias to every layer; ``residual`` makes each square hidden layer
    h + s(W h). Both, and ``tanh``, break homogeneity: they are the negative controls.
    """
    widths = tuple(widths)
    expect(len(widths) >= 2 and all(isinstance(w, int) and w >= 1 for w in widths) and widths[-1] == 1,
           expected="widths (input, hidden..., 1) of positive ints ending in 1", received=repr(widths),
           fix="e.g. widths=(2, 3, 1)")
    expect(activation in ACTIVATIONS, expected=f"activation in {ACTIVATIONS}", received=repr(activation),
           fix="pick one of those")
    expect(isinstance(power, int) and power >= 1, expected="an integer power >= 1", received=repr(power),
           fix="power=2 or 3")
    depth = len(widths) - 1
    square = [k for k in range(depth - 1) if widths[k] == widths[k + 1]]
    expect(not residual or bool(square), expected="a square hidden layer for the residual skip",
           received=f"widths={widths}", fix="make a hidden width equal to the one before it, e.g. (2, 2, 1)")
    masks = _read_pattern(pattern, samples, activation, widths[1:-1])
    p = power if activation == "relu_p" else 1
    slope = sp.Symbol("alpha", real=True)
    weights = tuple(_matrix(f"w{k + 1}", widths[k + 1], widths[k]) for k in range(depth))
    biases = tuple(_matrix(f"b{k + 1}", widths[k + 1], 1) for k in range(depth)) if bias else ()
    inputs = tuple(_matrix(f"x{n + 1}", widths[0], 1) for n in range(len(masks)))
    labels = tuple(sp.Symbol(f"y{n + 1}", real=True) for n in range(len(masks)))
    outputs = []
    for x, sample_masks in zip(inputs, masks):
        h = x
        for k, W in enumerate(weights):
            z = W * h + (biases[k] if bias else sp.zeros(W.rows, 1))
            if k == depth - 1:
                outputs.append(z[0])
                break
            a = _activate(z, activation, sample_masks[k], p, slope)
            h = h + a if (residual and k in square) else a
    return SymbolicNetwork(
        weights=weights, biases=biases, inputs=inputs, labels=labels, outputs=tuple(outputs),
        degrees=tuple(p ** (depth - 1 - k) for k in range(depth)), power=p,
        homogeneous=not (bias or residual or activation == "tanh"), loss=sp.Function("l"))


def _check_layer(net: SymbolicNetwork, layer: int, pair: bool) -> None:
    last = len(net.weights) - (2 if pair else 1)
    expect(isinstance(layer, int) and 0 <= layer <= last, expected=f"a layer index in 0..{last}",
           received=repr(layer), fix="layers are 0-based: layer k is net.weights[k]")


def euler_residual(net: SymbolicNetwork, layer: int, degree=None) -> sp.Matrix:
    """<W_k, df_n/dW_k> - d_k f_n for every sample n (Euler's theorem; zero iff degree d_k is right)."""
    _check_layer(net, layer, pair=False)
    d = net.degrees[layer] if degree is None else degree
    W = net.weights[layer]
    return sp.Matrix([sum(w * sp.diff(f, w) for w in W) - d * f for f in net.outputs])


def balance_gap(A: sp.Matrix, B: sp.Matrix, *, neuron=None, power=1) -> sp.Expr:
    """||A||^2 - p ||B||^2, or per neuron i: ||A[i,:]||^2 - p ||B[:,i]||^2 (A = W_k, B = W_{k+1})."""
    if neuron is not None:
        A, B = A[neuron, :], B[:, neuron]
    return sum(a**2 for a in A) - power * sum(b**2 for b in B)


def _gap_of(net: SymbolicNetwork, layer: int, neuron, power, matrices) -> sp.Expr:
    _check_layer(net, layer, pair=True)
    rows = net.weights[layer].rows
    expect(neuron is None or (isinstance(neuron, int) and 0 <= neuron < rows),
           expected=f"neuron None or in 0..{rows - 1}", received=repr(neuron), fix="index a unit of layer k's output")
    p = net.power if power is None else power
    return balance_gap(matrices[layer], matrices[layer + 1], neuron=neuron, power=p)


def balance_rate(net: SymbolicNetwork, layer: int, neuron=None, power=None) -> sp.Expr:
    """d/dt of the balance gap of layers (k, k+1) along gradient flow W' = -dL/dW (zero: Du, Hu & Lee 2018).

    Computed literally: sum over weights w of d(gap)/dw * (-dL/dw), with L = sum_n l(y_n f(x_n)).
    """
    gap = _gap_of(net, layer, neuron, power, net.weights)
    total = net.total_loss
    return sp.Add(*(sp.diff(gap, w) * -sp.diff(total, w) for W in net.weights for w in W if gap.has(w)))


def discrete_balance_residual(net: SymbolicNetwork, layer: int, neuron=None, power=None):
    """gap(W - eta g) - gap(W) - eta^2 gap(g) for one GD step; zero by Euler. Returns (residual, eta).

    The residual is first expanded with the step entries g as opaque symbols G (pure algebra: the eta^2
    terms cancel for any step), then g = dL/dW is substituted; what remains is -2 eta times Euler's
    difference, which ``prove`` expands. The returned expression equals the residual identically.
    """
    eta = sp.Symbol("eta", positive=True)
    steps = [W.applyfunc(lambda w: sp.Symbol(f"g_{w.name}", real=True)) for W in net.weights]
    update = {w: w - eta * g for W, G in zip(net.weights, steps) for w, g in zip(W, G)}
    gap = _gap_of(net, layer, neuron, power, net.weights)
    residual = sp.expand(gap.xreplace(update) - gap - eta**2 * _gap_of(net, layer, neuron, power, steps))
    gradients = {g: d for k, G in enumerate(steps) for g, d in zip(G, net.gradient(k))}
    return residual.xreplace(gradients), eta


def _entries(expr):
    return list(expr) if isinstance(expr, sp.MatrixBase) else [expr]


def prove(expr) -> bool:
    """True iff every entry of ``expr`` expands to exactly 0 (a proof of the identity ``expr == 0``).

    expand() is a canonical form for polynomials in the weights whose coefficients are the opaque atoms
    l'(q_n), tanh(z); False means "not proved": use ``witness`` to disprove.
    """
    return all(sp.expand(e) == 0 for e in _entries(expr))


def witness(expr, *, seed: int = 0, loss=None) -> list[sp.Expr]:
    """Values of ``expr``'s entries at a random rational point, with l := ``loss`` (default exp(-q)).

    A non-zero value is a counterexample: the identity fails for that loss at that point.
    """
    rng = random.Random(seed)
    t = sp.Dummy("t")
    concrete = sp.Lambda(t, sp.exp(-t) if loss is None else loss(t))
    entries = [e.replace(lambda a: isinstance(a, AppliedUndef), lambda a: concrete(*a.args)).doit()
               for e in _entries(expr)]
    symbols = sorted(set().union(*(e.free_symbols for e in entries)), key=str)
    point = {s: sp.Rational(rng.choice([-1, 1]) * rng.randint(1, 3), rng.randint(1, 3)) for s in symbols}
    values = [e.xreplace(point) for e in entries]
    return [v if v.is_Rational else v.evalf(30) for v in values]
