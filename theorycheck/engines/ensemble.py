"""Many bias-free MLPs of one architecture trained as one tensor program: GD and SGD on stacked weights.

E networks f_e(x) = W_K s(... s(W_1 x)) (s: ReLU, LeakyReLU or the identity) keep their weights stacked,
W_k of shape (E, n_k, n_{k-1}). A step is a few batched matrix products and a hand-written backward pass
into preallocated buffers: no autograd graph and no allocation per step. The networks are processed in
chunks small enough for their activations to stay in cache, each chunk running all its steps; on the CPU
the chunks run side by side, one per torch thread, and their products go to numpy's matmul (OpenBLAS),
which releases the GIL (see ``_product``); on other devices to torch.bmm.

The update is gradient descent on the summed loss L = sum_n l(q_n), q_n = y_n f(x_n) (``method="gd"``), or
SGD on batches of b indices with the batch sum scaled by N / b (``"sgd"``), as in
``theorycheck.train(method="gd" | "sgd")``; ``sgd_indices(..., seed=s)`` draws for network e the batches
``train(..., seed=s + e)`` draws. Recorded per network at every step t = 0..T (the weights after t
updates, on the full data set): log L, min_n q_n and each layer's squared Frobenius norm. In exact
arithmetic every network follows the iterates of its own nn.Sequential under torch.optim.SGD(lr) on the same
loss; in floating point the two differ by the order of the sums in the matrix products only.
Losses: logistic l(q) = log(1 + e^-q) (softplus(-q), returning -q only beyond -q > -log u, where that errs
below u; torch's default cut at 20 changes a loop's gradient there by up to e^-20 relative) and exponential
l(q) = e^-q. Records are computed in the run's dtype and returned as float64 arrays.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from threadpoolctl import ThreadpoolController
from torch import nn

from ..core.devices import dtype_name, synchronize
from ..core.errors import expect

ACTIVATIONS = ("relu", "leaky_relu", "linear")
LOSSES = ("logistic", "exp")
METHODS = ("gd", "sgd")
RECORD_WINDOW = 32  # steps whose log L and min margin are computed in one operation each (4 fewer a step)
CACHE_BYTES = 2**21  # activations of one chunk: a core's L2 (measured: 10-32-32-1 on 128 samples, 16-64 networks)


def mlp(widths: Sequence[int], activation: str = "relu", negative_slope: float = 0.01,
        dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """The bias-free nn.Sequential MLP n_0 -> n_1 -> ... -> n_K = 1 (PyTorch's default initialization)."""
    layers: list[nn.Module] = []
    for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        if k > 0 and activation != "linear":
            layers.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(negative_slope))
        layers.append(nn.Linear(fan_in, fan_out, bias=False))
    return nn.Sequential(*layers).to(dtype)


def _read_sequential(model: nn.Module) -> tuple[list[torch.Tensor], str, float]:
    """(weights, activation, negative slope) of a bias-free nn.Sequential MLP, or InvalidArgument."""
    expect(isinstance(model, nn.Sequential), expected="an nn.Sequential of Linear(bias=False) layers and activations",
           received=type(model).__name__, fix="rebuild the network with theorycheck.engines.ensemble.mlp(widths)")
    weights, kinds = [], set()
    for index, module in enumerate(model):
        if type(module) is nn.Linear:
            expect(module.bias is None, expected="bias-free Linear layers", received=f"a bias in layer {index}",
                   fix="nn.Linear(..., bias=False)")
            weights.append(module.weight.detach())
        elif type(module) is nn.ReLU:
            kinds.add(("relu", 0.0))
        elif type(module) is nn.LeakyReLU:
            kinds.add(("leaky_relu", float(module.negative_slope)))
        else:
            # the classes themselves: a subclass may compute something else in forward than the engine would
            expect(type(module) is nn.Identity, expected="Linear, ReLU, LeakyReLU or Identity modules (not subclasses)",
                   received=f"{type(module).__name__} at index {index}", fix="an MLP of those modules only")
    expect(len(kinds) <= 1, expected="one activation throughout", received=str(sorted(kinds)),
           fix="one ensemble per activation")
    activation, slope = kinds.pop() if kinds else ("linear", 0.0)
    expect(len(weights) >= 1, expected="at least one Linear layer", received="none", fix="an MLP")
    return weights, activation, slope


@dataclasses.dataclass
class Ensemble:
    """E bias-free MLPs of one architecture: ``weights[k]`` of shape (E, n_{k+1}, n_k), n_K = 1."""

    weights: list[torch.Tensor]
    activation: str = "relu"
    negative_slope: float = 0.01

    def __post_init__(self):
        expect(self.activation in ACTIVATIONS, expected=f"activation in {ACTIVATIONS}", received=repr(self.activation),
               fix="'relu', 'leaky_relu' or 'linear'")
        expect(0 <= self.negative_slope and math.isfinite(self.negative_slope), expected="negative_slope >= 0",
               received=repr(self.negative_slope), fix="a LeakyReLU slope in [0, 1)")
        expect(len(self.weights) >= 1 and all(isinstance(W, torch.Tensor) and W.ndim == 3 for W in self.weights),
               expected="a list of weight tensors of shape (E, out, in)",
               received=str([tuple(getattr(W, "shape", ())) for W in self.weights]), fix="torch.stack the layers")
        first = self.weights[0]
        shapes = [tuple(W.shape) for W in self.weights]
        chained = all(a[1] == b[2] for a, b in zip(shapes[:-1], shapes[1:]))
        expect(chained and shapes[-1][1] == 1 and len({s[0] for s in shapes}) == 1,
               expected="layers (E, n_1, n_0), (E, n_2, n_1), ..., (E, 1, n_{K-1})", received=str(shapes),
               fix="one scalar output per network and matching widths")
        expect(first.is_floating_point() and all(W.dtype == first.dtype and W.device == first.device
                                                 for W in self.weights),
               expected="floating weights of one dtype on one device",
               received=str(sorted({f"{W.device}/{W.dtype}" for W in self.weights})), fix="W.to(dtype)")
        self.weights = [W.detach().contiguous() for W in self.weights]

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.weights[0].shape[2],) + tuple(W.shape[1] for W in self.weights)

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> "Ensemble":
        """Stack the weights of nn.Sequential MLPs of one architecture (copies; the models are unchanged)."""
        expect(len(models) >= 1, expected="at least one model", received="an empty list", fix="pass the networks")
        read = [_read_sequential(m) for m in models]
        shapes = {tuple(tuple(W.shape) for W in r[0]) + r[1:] for r in read}
        expect(len(shapes) == 1, expected="models of one architecture (layer shapes and activation)",
               received=f"{len(shapes)} different ones", fix="one ensemble per architecture")
        layers = [torch.stack([r[0][k] for r in read]) for k in range(len(read[0][0]))]
        return cls(layers, read[0][1], read[0][2] if read[0][1] == "leaky_relu" else 0.01)

    @classmethod
    def random(cls, size: int, widths: Sequence[int], *, activation: str = "relu", negative_slope: float = 0.01,
               dtype: torch.dtype = torch.float64, seed: int = 0) -> "Ensemble":
        """``size`` networks ``mlp(widths)``, network e initialized under torch.manual_seed(seed + e)."""
        models = []
        for e in range(size):
            torch.manual_seed(seed + e)
            models.append(mlp(widths, activation, negative_slope, dtype))
        return cls.from_models(models)

    def to_models(self) -> list[nn.Sequential]:
        """One nn.Sequential per network, holding a copy of its current weights."""
        models = []
        for e in range(self.size):
            model = mlp(self.widths, self.activation, self.negative_slope, self.weights[0].dtype)
            linears = [m for m in model if isinstance(m, nn.Linear)]
            with torch.no_grad():
                for layer, W in zip(linears, self.weights):
                    layer.weight.copy_(W[e])
            models.append(model.to(self.weights[0].device))
        return models

    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        """f_e(x_n) for every network, shape (E, N); X of shape (N, n_0) or (E, N, n_0)."""
        h = X.expand(self.size, *X.shape[-2:]) if X.ndim == 2 else X
        for k, W in enumerate(self.weights):
            h = torch.bmm(h, W.transpose(1, 2))
            if k < len(self.weights) - 1:
                h = _activate(h, self.activation, self.negative_slope)
        return h.squeeze(2)


def _activate(h: torch.Tensor, activation: str, slope: float) -> torch.Tensor:
    """The activation, in place."""
    if activation == "relu":
        return torch.clamp_min_(h, 0)
    if activation == "leaky_relu":
        return torch.nn.functional.leaky_relu_(h, slope)
    return h


def _activate_backward(delta: torch.Tensor, h: torch.Tensor, activation: str, slope: float) -> None:
    """delta <- delta * s'(z), read from the activation's output h (the same kernels autograd runs)."""
    if activation == "relu":
        torch.ops.aten.threshold_backward.grad_input(delta, h, 0, grad_input=delta)
    elif activation == "leaky_relu":
        torch.ops.aten.leaky_relu_backward.grad_input(delta, h, slope, True, grad_input=delta)


@dataclasses.dataclass(frozen=True)
class EnsembleRun:
    """Records of an ensemble run, float64 arrays indexed [t, e] (t = 0..steps: after t updates).

    ``log_loss``: log L on the full data set; ``min_margin``: min_n y_n f(x_n); ``layer_norms_sq``
    [t, e, k]: ||W_k||_F^2; ``non_finite`` [e]: the first record with a non-finite value (-1: none; a summed loss below N times the
    dtype's smallest normal number has lost its digits and is recorded as nan);
    ``indices`` [t, e, :]: the SGD batches (None for GD).
    """

    method: str
    loss: str
    lr: float
    batch_size: int | None
    steps: int
    widths: tuple[int, ...]
    activation: str
    log_loss: np.ndarray
    min_margin: np.ndarray
    layer_norms_sq: np.ndarray
    non_finite: np.ndarray
    indices: np.ndarray | None
    seconds: float
    chunk: int
    dtype: str
    device: str

    @property
    def network_steps_per_second(self) -> float:
        return self.log_loss.shape[1] * self.steps / self.seconds if self.seconds > 0 else math.inf


def sgd_indices(n_networks: int, n_samples: int, batch_size: int, steps: int, seed: int = 0) -> torch.Tensor:
    """Batches of shape (steps, E, b): for network e, consecutive b-slices of random permutations of range(N)
    drawn by torch.Generator().manual_seed(seed + e), the batches ``train(method="sgd", seed=seed + e)`` uses."""
    expect(1 <= batch_size <= n_samples, expected=f"1 <= batch_size <= {n_samples}", received=repr(batch_size),
           fix="e.g. batch_size=n_samples // 4")
    epochs = -(-steps * batch_size // n_samples)
    out = torch.empty(steps, n_networks, batch_size, dtype=torch.long)
    for e in range(n_networks):
        generator = torch.Generator().manual_seed(seed + e)
        order = torch.cat([torch.randperm(n_samples, generator=generator) for _ in range(epochs)])
        out[:, e] = order[:steps * batch_size].view(steps, batch_size)
    return out


def _check_data(ensemble: Ensemble, X, y) -> tuple[torch.Tensor, torch.Tensor]:
    """X as (E, N, n_0) (a shared data set is expanded, not copied) and y as (E, N) in X's dtype."""
    W = ensemble.weights[0]
    E, d = ensemble.size, ensemble.widths[0]
    expect(isinstance(X, torch.Tensor) and X.ndim in (2, 3) and X.shape[-1] == d and (X.ndim == 2 or X.shape[0] == E),
           expected=f"X of shape (N, {d}) or ({E}, N, {d})", received=str(tuple(getattr(X, "shape", ()))),
           fix="one data set for all networks, or one per network stacked along dim 0")
    expect(X.dtype == W.dtype and X.device == W.device, expected=f"X on the weights' {W.device} / {W.dtype}",
           received=f"{X.device} / {X.dtype}", fix=f"X.to({W.dtype})")
    N = X.shape[-2]
    expect(isinstance(y, torch.Tensor) and tuple(y.shape) in ((N,), (E, N)), expected=f"y of shape ({N},) or ({E}, {N})",
           received=str(tuple(getattr(y, "shape", ()))), fix="labels in {-1, +1}, one per row of X")
    expect(bool(((y == 1) | (y == -1)).all()), expected="labels in {-1, +1}", received="other values",
           fix="y = 2 * y - 1 for 0/1 labels")
    return X.detach().expand(E, N, d), y.to(dtype=W.dtype, device=W.device).expand(E, N)


def _default_chunk(ensemble: Ensemble, n_samples: int, threads: int) -> int:
    """Networks per chunk: their activations (N x sum of widths) within CACHE_BYTES, at least one, and the
    networks spread evenly over a multiple of ``threads`` chunks (64 in chunks of at most 54 on two threads
    run as 32 + 32, not 54 + 10; at most 27 as 4 x 16, not 3 x 22, which leaves a thread idle)."""
    per_network = n_samples * sum(ensemble.widths) * ensemble.weights[0].element_size()
    largest = max(1, min(ensemble.size, CACHE_BYTES // per_network))
    chunks = min(ensemble.size, math.ceil(math.ceil(ensemble.size / largest) / threads) * threads)
    return math.ceil(ensemble.size / chunks)


def train_ensemble(ensemble: Ensemble, X: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int,
                   loss: str = "logistic", method: str = "gd", batch_size: int | None = None,
                   indices: torch.Tensor | None = None, seed: int = 0, chunk: int | None = None) -> EnsembleRun:
    """Train every network of ``ensemble`` for ``steps`` steps of size ``lr``; the weights are updated in place.

    X: (N, n_0) shared or (E, N, n_0) one data set per network; y: (N,) or (E, N) labels in {-1, +1}.
    SGD (``method="sgd"``) takes ``indices`` (steps, E, b) or draws ``sgd_indices(E, N, batch_size, steps, seed)``.
    ``chunk``: networks per tensor program (default: as many as fit CACHE_BYTES of activations, spread over a
    multiple of torch.get_num_threads() chunks). On the CPU with more than one torch thread the chunks run in
    that many threads, torch's intra-op threads set to one meanwhile (restored on return)."""
    expect(method in METHODS, expected=f"method in {METHODS}", received=repr(method), fix="'gd' or 'sgd'")
    expect(loss in LOSSES, expected=f"loss in {LOSSES}", received=repr(loss), fix="'logistic' or 'exp'")
    expect(isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr), expected="a step size lr > 0",
           received=repr(lr), fix="e.g. lr=0.05")
    expect(isinstance(steps, int) and steps >= 1, expected="steps >= 1 (an int)", received=repr(steps), fix="steps=300")
    X, y = _check_data(ensemble, X, y)
    E, N = y.shape
    if method == "sgd":
        if indices is None:
            expect(batch_size is not None, expected="batch_size or indices for method='sgd'", received="neither",
                   fix="batch_size=N // 4")
            indices = sgd_indices(E, N, batch_size, steps, seed)
        expect(isinstance(indices, torch.Tensor) and indices.ndim == 3 and tuple(indices.shape[:2]) == (steps, E)
               and indices.shape[2] >= 1 and not indices.is_floating_point()
               and bool(((indices >= 0) & (indices < N)).all()),
               expected=f"indices: an integer tensor of shape ({steps}, {E}, b) with values in [0, {N})",
               received=str(tuple(getattr(indices, "shape", ()))), fix="theorycheck.engines.ensemble.sgd_indices(...)")
        batch_size = indices.shape[2]
        indices = indices.to(device=X.device, dtype=torch.long)
    else:
        expect(indices is None and batch_size is None, expected="no indices or batch_size for method='gd'",
               received=f"batch_size={batch_size!r}", fix="method='sgd' for mini-batches")
    threads = torch.get_num_threads() if X.device.type == "cpu" else 1
    chunk = _default_chunk(ensemble, N, threads) if chunk is None else chunk
    expect(isinstance(chunk, int) and chunk >= 1, expected="chunk >= 1", received=repr(chunk), fix="leave chunk=None")
    dtype, device, K = X.dtype, X.device, len(ensemble.weights)
    rec_loss = torch.full((steps + 1, E), math.nan, dtype=dtype, device=device)
    rec_margin = torch.full_like(rec_loss, math.nan)
    rec_norms = torch.full((K, steps + 1, E), math.nan, dtype=dtype, device=device)

    def train_part(part: slice) -> None:
        flat, weights = _packed([W[part] for W in ensemble.weights])
        for W, layer in zip(weights, ensemble.weights):
            W.copy_(layer[part])
        with np.errstate(all="ignore"):  # non-finite values are recorded, as in torch, not warned about
            _train_chunk(flat, weights, X[part].contiguous(), y[part].contiguous(), rec_loss[:, part],
                         rec_margin[:, part], rec_norms[:, :, part], loss=loss, activation=ensemble.activation,
                         slope=ensemble.negative_slope, lr=float(lr), steps=steps,
                         index=None if indices is None else indices[:, part])
        for W, trained in zip(ensemble.weights, weights):
            W[part] = trained

    parts = [slice(e0, min(E, e0 + chunk)) for e0 in range(0, E, chunk)]
    synchronize(device)  # the clock covers this run's kernels, and only those
    started = time.perf_counter()
    # the chunks are the parallelism: a BLAS splitting each small product over threads of its own
    # oversubscribes the cores (measured: 64-128-1 on 64 samples, 2 threads, 2.3x slower); restored on return
    with _blas_threads().limit(limits=1, user_api="blas"):
        if threads > 1 and len(parts) > 1:
            # one chunk per thread; torch's own intra-op threads would only contend with them (measured: 2 threads
            # at one op thread each 1.6-1.9x faster than at two) and are restored afterwards
            torch.set_num_threads(1)
            try:
                with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                    list(pool.map(train_part, parts))
            finally:
                torch.set_num_threads(threads)
        else:
            for part in parts:
                train_part(part)
    synchronize(device)
    seconds = time.perf_counter() - started
    # a summed loss below N x the smallest normal number has lost its digits: not representable, recorded as nan
    rec_loss[rec_loss < math.log(N * torch.finfo(dtype).tiny)] = math.nan
    log_loss, min_margin = rec_loss.double().cpu().numpy(), -rec_margin.double().cpu().numpy()
    norms = rec_norms.permute(1, 2, 0).double().cpu().numpy() ** 2
    bad = ~(np.isfinite(log_loss) & np.isfinite(min_margin) & np.isfinite(norms).all(axis=2))
    non_finite = np.where(bad.any(axis=0), bad.argmax(axis=0), -1)
    return EnsembleRun(method=method, loss=loss, lr=float(lr), batch_size=batch_size, steps=steps,
                       widths=ensemble.widths, activation=ensemble.activation, log_loss=log_loss,
                       min_margin=min_margin, layer_norms_sq=norms, non_finite=non_finite,
                       indices=None if indices is None else indices.cpu().numpy(), seconds=seconds, chunk=chunk,
                       dtype=dtype_name(dtype), device=str(device))


def _packed(layers: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One uninitialized (c, P) buffer for layers of shapes (c, n_out, n_in) side by side, and its views of
    those shapes: an update of every layer is then one operation."""
    sizes = [W[0].numel() for W in layers]
    flat = torch.empty(layers[0].shape[0], sum(sizes), dtype=layers[0].dtype, device=layers[0].device)
    return flat, [part.view(W.shape) for part, W in zip(flat.split(sizes, dim=1), layers)]


def _train_chunk(flat, weights, X, y, rec_loss, rec_margin, rec_norms, *, loss, activation, slope, lr, steps,
                 index):
    """GD/SGD on one chunk of c networks (``weights``: views of the :func:`_packed` buffer ``flat``): forward
    on all N samples (the records), backward on the batch.

    Every view and buffer is made once, so a step is ~19 tensor operations whatever c is. ``rec_margin``
    receives max_n (-q_n), ``rec_norms`` ||W_k||_F (the caller negates and squares), ``rec_loss`` log L.
    """
    c, N = y.shape
    K = len(weights)
    b = N if index is None else index.shape[2]
    new = functools.partial(torch.empty, dtype=X.dtype, device=X.device)
    hs = [X] + [new(c, N, W.shape[1]) for W in weights]
    outputs = hs[K].view(c, N)
    outputs_row = hs[K].view(c, 1, N)  # the output layer as row x matrix: a third of bmm's time for matrix x column
    acts = hs[:K] if index is None else [new(c, b, h.shape[2]) for h in hs[:K]]
    weights_t = [W.transpose(1, 2) for W in weights]
    flats = [W.view(c, -1) for W in weights]
    flat_grads, grads = _packed(weights)
    deltas = [None] + [new(c, b, W.shape[2]) for W in weights[1:]]  # deltas[k]: dL/dh_k on the batch
    deltas_t = [None] + [d.transpose(1, 2) for d in deltas[1:]]
    top = new(c, b, 1)
    top_t, top_flat = top.transpose(1, 2), top.view(c, b)
    # the margins of RECORD_WINDOW steps are kept and reduced to their records (log L, min margin) together
    window, minus_y = new(min(RECORD_WINDOW, steps + 1), c, N), -y
    signs = -y * (N / b)  # dL/df_n = y_n l'(q_n), l'(q) = -sigmoid(-q) or -e^-q; SGD scales the batch sum by N / b
    # softplus(x) = x + log1p(e^-x): returning x above -log(u) errs by less than u relative (torch's default: 20)
    threshold = -math.log(torch.finfo(X.dtype).eps / 2)
    norm_rows = [rec_norms[k].unbind(0) for k in range(K)]
    expanded = None if index is None else [index.unsqueeze(3).expand(steps, c, b, h.shape[2]) for h in hs[:K]]
    forward = [_product(hs[k], weights_t[k], hs[k + 1]) for k in range(K - 1)]
    forward.append(_product(weights[K - 1], hs[K - 1].transpose(1, 2), outputs_row))
    outgoing_t = deltas_t[1:] + [top_t]  # outgoing_t[k]: dL/dh_{k+1} transposed, for layer k's gradient
    gradient = [_product(outgoing_t[k], acts[k], grads[k]) for k in range(K)]
    backward = {k: _product(deltas[k + 1], weights[k], deltas[k]) for k in range(1, K - 1)}
    for t in range(steps + 1):
        for k in range(K - 1):
            forward[k]()
            _activate(hs[k + 1], activation, slope)
        forward[K - 1]()
        slot = t % len(window)
        minus_q = window[slot]
        torch.mul(outputs, minus_y, out=minus_q)
        for k in range(K):
            torch.linalg.vector_norm(flats[k], dim=1, out=norm_rows[k][t])
        if slot == len(window) - 1 or t == steps:
            block, rows = window[:slot + 1], slice(t - slot, t + 1)
            torch.amax(block, 2, out=rec_margin[rows])
            per_sample = (torch.nn.functional.softplus(block, threshold=threshold) if loss == "logistic"
                          else torch.exp(block))
            torch.log(per_sample.sum(2), out=rec_loss[rows])
        if t == steps:
            break
        if index is None:
            batch_minus_q, batch_signs = minus_q, signs
        else:
            for k in range(K):
                torch.gather(hs[k], 1, expanded[k][t], out=acts[k])
            batch_minus_q, batch_signs = minus_q.gather(1, index[t]), signs.gather(1, index[t])
        weight = torch.sigmoid(batch_minus_q) if loss == "logistic" else torch.exp(batch_minus_q)
        torch.mul(weight, batch_signs, out=top_flat)
        for k in range(K - 1, -1, -1):
            gradient[k]()
            if k > 0:
                if k == K - 1:  # the output layer: an outer product (one rounding per entry either way)
                    torch.mul(top, weights[k], out=deltas[k])
                else:
                    backward[k]()
                _activate_backward(deltas[k], acts[k], activation, slope)
        flat.add_(flat_grads, alpha=-lr)


@functools.cache
def _blas_threads() -> ThreadpoolController:
    """The loaded BLAS libraries, found once (a fresh search per run costs ~1.2 ms, measured)."""
    return ThreadpoolController()


def _product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor):
    """A function computing out <- a @ b (batched), its views bound once. On the CPU in float32/float64:
    numpy's matmul, which calls OpenBLAS per matrix without holding the GIL (measured on these shapes, one
    thread: 1.5-1.6x torch.bmm's MKL kernels in float64, 1.0-1.3x in float32), so chunks in threads run side by
    side; elsewhere torch.bmm. Both sum each entry's products in floating point: results agree to roundoff."""
    if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64):
        a_view, b_view, out_view = a.numpy(), b.numpy(), out.numpy()
        return functools.partial(np.matmul, a_view, b_view, out=out_view)
    return functools.partial(torch.bmm, a, b, out=out)
