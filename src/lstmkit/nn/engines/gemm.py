"""The scan engine's matrix products: oneDNN's GEMM where it beats torch.mm, torch.mm elsewhere.

On the CPU, ``torch.mm``/``F.linear`` in float32 go to MKL's sgemm, while torch's own oneDNN
RNN kernels (and TensorFlow's) use oneDNN. On the 2-core AMD EPYC this package is benchmarked
on the two differ by 2x: the recurrent product of an LSTM(256) at batch 64,
(64 x 256) @ (256 x 1024), takes 182 us through ``torch.addmm`` and 89 us through oneDNN with
the weight packed once into oneDNN's blocked layout; at batch 8 and a GRU(256), 36 against
23 us. oneDNN's call costs about 12 us more, so below :data:`MIN_ONEDNN_MACS` multiply-adds
(batch 16 at H = 128, batch 1 at H = 256) MKL stays faster.

PyTorch exposes oneDNN's GEMM on dense tensors only through private operators, the ones
TorchInductor emits for CPU linears: ``torch.ops.mkldnn._linear_pointwise`` and
``torch.ops.mkldnn._reorder_linear_weight``. Only :func:`_onednn_pack` and
:func:`_onednn_linear` call them; :data:`ONEDNN` is decided once by a probe that checks they
exist and agree with ``torch.mm``. Where they do not (a build without oneDNN, a changed
signature), every product falls back to the public ``torch.mm``/``torch.addmm`` with the same
results. ``tests/nn/test_gemm.py`` fails loudly if the probe stops passing on a build that has
oneDNN.

What stays on ``torch.mm``: float64 and CUDA tensors. Products whose reduction runs over the
rows, a.T @ b (the weight gradients), do not fit ``_linear_pointwise`` (both operands would
have to be transposed in memory first, which costs more than MKL's whole product); oneDNN's
matmul reads them through their strides, but torch keeps it inside ATen, so the scan engine's
compiled loops (native_scan.cpp, ``mm_tn``) call it where they are built: 7.2 ms against MKL's
16.3 for a (6400 x 1024).T @ (6400 x 256). Results through oneDNN differ from MKL's in the
last bits (another summation order).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native

__all__ = ["MIN_ONEDNN_MACS", "ONEDNN", "Weight", "addmm_nt", "linear", "mm_nt", "mm_tn",
           "onednn_for", "onednn_pays"]

# Below this many multiply-adds per product torch.mm (MKL) is as fast or faster; measured on
# the development machine with a packed weight: 1.05M MACs 16.6 (MKL) vs 18.8 us, 1.57M 36 vs
# 23 us, 16.8M 182 vs 89 us.
MIN_ONEDNN_MACS = 1_250_000


def _onednn_pack(w: Tensor, rows: int) -> Tensor:
    """w (N, K) reordered into oneDNN's layout for products with ``rows``-row inputs."""
    return torch.ops.mkldnn._reorder_linear_weight(w, rows)


def _onednn_linear(x: Tensor, w: Tensor, add: Tensor | None = None,
                   bias: Tensor | None = None) -> Tensor:
    """x @ w.T + bias (+ add) through oneDNN: x (M, K), w (N, K) dense or packed, bias (N,),
    add (M, N)."""
    op = torch.ops.mkldnn._linear_pointwise
    if add is None:
        return op(x, w, bias, "none", [], "")
    return op.binary(x, add, w, bias, "add")


def _probe() -> bool:
    """True when oneDNN's GEMM is there and agrees with torch.mm on this build."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w, c = (torch.randn(s, generator=g) for s in ((5, 7), (3, 7), (5, 3)))
        xt = torch.randn(7, 5, generator=g).t()  # a transposed (strided) input
        want = x @ w.t()
        checks = [
            (_onednn_linear(x, w), want),
            (_onednn_linear(x, w, add=c), c + want),
            (_onednn_linear(x, w, bias=c[0]), c[0] + want),
            (_onednn_linear(xt, w), xt @ w.t()),
            (_onednn_linear(x, _onednn_pack(w, 5), add=c), c + want),
            (_onednn_linear(x[:2], _onednn_pack(w, 5), bias=c[0]), c[0] + want[:2]),
        ]
        return all(torch.allclose(got, ref, atol=1e-5) for got, ref in checks)
    except (AttributeError, RuntimeError, TypeError):
        return False


ONEDNN: bool = _probe()


def onednn_for(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether products in ``dtype`` on ``device`` can go to oneDNN at all."""
    return ONEDNN and dtype == torch.float32 and device.type == "cpu"


def onednn_pays(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether an (m x k) @ (k x n) product in ``dtype`` on ``device`` goes to oneDNN."""
    return onednn_for(dtype, device) and m * k * n >= MIN_ONEDNN_MACS


class Weight:
    """A weight w (N, K) prepared for many products x @ w.T with ``rows``-row inputs.

    Packed once into oneDNN's layout where that pays (the scan engine multiplies by the same
    recurrent weight at every step); otherwise the plain tensor for torch.mm.
    """

    __slots__ = ("packed", "w")

    def __init__(self, w: Tensor, rows: int) -> None:
        self.w = w
        self.packed = (_onednn_pack(w.detach(), rows)
                       if onednn_pays(rows, w.shape[1], w.shape[0], w.dtype, w.device) else None)


def _split(w: Tensor | Weight) -> tuple[Tensor, Tensor | None]:
    """(the dense weight, what oneDNN would take or None)."""
    if isinstance(w, Weight):
        return w.w, w.packed
    return w, w  # a dense weight for a one-off product: the product's size decides


def mm_nt(x: Tensor, w: Tensor | Weight, bias: Tensor | None = None) -> Tensor:
    """x @ w.T (+ bias) for x (M, K), w (N, K) and bias (N,)."""
    dense, onednn = _split(w)
    if onednn is not None and onednn_pays(x.shape[0], x.shape[1], dense.shape[0], x.dtype,
                                          x.device):
        return _onednn_linear(x, onednn, bias=bias)
    return torch.mm(x, dense.t()) if bias is None else torch.addmm(bias, x, dense.t())


def addmm_nt(c: Tensor, x: Tensor, w: Tensor | Weight) -> Tensor:
    """c + x @ w.T for c (M, N), x (M, K) and w (N, K)."""
    dense, onednn = _split(w)
    if onednn is not None and onednn_pays(x.shape[0], x.shape[1], dense.shape[0], x.dtype,
                                          x.device):
        return _onednn_linear(x, onednn, add=c)
    return torch.addmm(c, x, dense.t())


def mm_tn(a: Tensor, b: Tensor) -> Tensor:
    """a.T @ b for a (K, M) and b (K, N): a weight gradient. In float32 on the CPU, through
    the compiled loops' ``mm_tn`` (oneDNN's matmul, reading a.T through its strides) where
    they are built and the product is large enough; torch.mm otherwise (see above)."""
    if (onednn_pays(a.shape[1], a.shape[0], b.shape[1], a.dtype, a.device)
            and native.available()):
        return torch.ops.lstmkit_native.mm_tn(a, b)
    return a.t() @ b


class _Linear(torch.autograd.Function):
    """y = x @ w.T (+ bias), with dL/dx through :func:`mm_nt` and dL/dw through :func:`mm_tn`."""

    @staticmethod
    def forward(ctx, x, w, bias):
        ctx.save_for_backward(x, w)
        ctx.has_bias = bias is not None
        return mm_nt(x, w, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = mm_nt(dy, w.t().contiguous()) if ctx.needs_input_grad[0] else None
        dw = mm_tn(dy, x) if ctx.needs_input_grad[1] else None
        db = dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ w.T (+ bias) (x (M, K), w (N, K), bias (N,)), differentiable, through oneDNN where
    that is faster.

    Its backward gives first derivatives only, as the scan engine that uses it does.
    """
    if not onednn_pays(x.shape[0], x.shape[1], w.shape[0], x.dtype, x.device):
        return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())
    return _Linear.apply(x, w, bias)
