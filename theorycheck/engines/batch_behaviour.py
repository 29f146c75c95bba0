"""How a module's forward treats a batch, measured on it (a record, never a verdict): whether it is random
(it draws from torch's generator, as dropout does at any rate p > 0, or two evaluations differ), whether it
leaves its buffers unchanged (a BatchNorm in training mode updates its running statistics), and whether the
samples are coupled (an output of sample n depends on the input of sample m != n: batch statistics).

Theorems about f(theta; x) per sample, and roundoff bounds built per sample, need a deterministic forward
with uncoupled samples: a module in training mode gives neither, and ``model.eval()`` is the usual fix.
Coupling is read from exact zeros of the input Jacobian: for each bit b of the sample index, the gradient of
<R, f> restricted to the samples whose bit b is 1 (R a random cotangent) with respect to the inputs of the
samples whose bit b is 0, and the reverse; every pair n != m differs in some bit, so 2 ceil(log2 N) backward
passes see any d f_n / d x_m != 0 (up to a cancellation of probability 0).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch

from ..core.evaluation import output_tensor


@dataclasses.dataclass(frozen=True)
class BatchBehaviour:
    random: bool
    mutates_buffers: bool
    coupled: bool | None  # None: not measurable (integer inputs, or a random forward)

    @property
    def per_sample(self) -> bool:
        """A deterministic forward that leaves the buffers alone and treats each sample on its own."""
        return not (self.random or self.mutates_buffers or self.coupled)

    def reason(self) -> str:
        found = [what for what, seen in (("random (two evaluations differ: dropout in training mode?)", self.random),
                                         ("it changes the module's buffers (BatchNorm running statistics in training "
                                          "mode?)", self.mutates_buffers),
                                         ("the samples are coupled (an output depends on another sample's input: "
                                          "batch statistics?)", self.coupled)) if seen]
        return ("the forward pass is " + "; ".join(found) + ": call model.eval() first") if found else ""

    def coupling(self, held: bool) -> tuple[bool, list[str]]:
        """(undecided, reasons) of a check whose roundoff bound is per sample: with coupled samples only a check
        that ``held`` within that bound is decided (a gap beyond it cannot be told from roundoff)."""
        if not self.coupled:
            return False, []
        if held:
            return False, ["the samples are coupled (batch statistics): everything held within the per-sample "
                           "roundoff bound"]
        return True, ["the samples are coupled (an output depends on another sample's input, e.g. batch statistics "
                      "of a BatchNorm in training mode): the per-sample roundoff bound does not cover f, so a gap "
                      "cannot be told from roundoff; call model.eval() for the per-sample network"]


def measure_batch_behaviour(model: torch.nn.Module, X: torch.Tensor) -> BatchBehaviour:
    """Two forward passes of a copy of ``model`` on ``X`` (the random state restored, ``model`` unchanged)
    and the coupling of the samples (module docstring)."""
    net = copy.deepcopy(model)
    before = {n: b.detach().clone() for n, b in net.named_buffers()}
    cuda = X.device.type == "cuda"
    with torch.random.fork_rng(devices=[X.device] if cuda else []):
        state = _generator_state(X.device)
        with torch.no_grad():
            first, second = (output_tensor(net(X)) for _ in range(2))
        # a draw from the generator (dropout at any p > 0) or two outputs that differ
        random = (not torch.equal(_generator_state(X.device), state)
                  or not torch.equal(torch.nan_to_num(first), torch.nan_to_num(second)))
        mutates = any(not torch.equal(torch.nan_to_num(b), torch.nan_to_num(before[n])) for n, b in net.named_buffers())
        coupled = None if random or not X.is_floating_point() else _coupled(net, X)
    return BatchBehaviour(random=random, mutates_buffers=mutates, coupled=coupled)


def _generator_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _coupled(net: torch.nn.Module, X: torch.Tensor) -> bool | None:
    N = X.shape[0]
    if N < 2:
        return False
    x = X.detach().clone().requires_grad_(True)
    out = output_tensor(net(x)).reshape(N, -1)
    if not (out.requires_grad and out.is_floating_point()):  # autograd does not see f (torch.no_grad inside)
        return None
    gen = torch.Generator().manual_seed(0)
    R = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out)
    index = torch.arange(N, device=X.device)
    for b in range(math.ceil(math.log2(N))):
        ones = (index >> b) & 1 == 1
        for source in (ones, ~ones):
            (g,) = torch.autograd.grad((R * out)[source].sum(), x, retain_graph=True, allow_unused=True)
            if g is not None and bool((g[~source] != 0).any()):
                return True
    return False
