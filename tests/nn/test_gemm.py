"""The scan engine's GEMM routing: oneDNN's private operator where it is faster, torch.mm else."""

from __future__ import annotations

import pytest
import torch

from lstmkit.nn.engines import gemm

from .helpers import assert_same, make_inputs, make_layer, run_with_grads


def test_the_private_onednn_operator_still_works_on_this_build():
    # Fails loudly when torch changes torch.ops.mkldnn._linear_pointwise: the engine would
    # quietly fall back to torch.mm and lose its speed.
    if not torch.backends.mkldnn.is_available():
        pytest.fail("this torch build has no oneDNN; the scan engine runs on torch.mm only")
    assert gemm.ONEDNN, "torch.ops.mkldnn._linear_pointwise is missing or disagrees with mm"
    assert gemm._probe()


def _big(*shape):
    return torch.randn(*shape, dtype=torch.float32)


@pytest.mark.parametrize("transposed", [False, True], ids=["contiguous", "strided"])
def test_products_agree_with_torch_mm_above_and_below_the_threshold(transposed):
    for m, k, n in [(64, 256, 1024), (4, 8, 16)]:
        x = _big(k, m).t() if transposed else _big(m, k)
        w = _big(k, n).t().contiguous() if transposed else _big(n, k)
        c, b = _big(m, n), _big(n)
        big = m * k * n >= gemm.MIN_ONEDNN_MACS
        assert gemm.onednn_pays(m, k, n, x.dtype, x.device) == (big and gemm.ONEDNN)
        packed = gemm.Weight(w, m)
        assert (packed.packed is not None) == (big and gemm.ONEDNN)
        tol = dict(atol=1e-3, rtol=1e-4)
        for weight in (w, packed):
            torch.testing.assert_close(gemm.mm_nt(x, weight), x @ w.t(), **tol)
            torch.testing.assert_close(gemm.mm_nt(x, weight, b), x @ w.t() + b, **tol)
            torch.testing.assert_close(gemm.addmm_nt(c, x, weight), c + x @ w.t(), **tol)
            # fewer rows than the weight was packed for (below the threshold: torch.mm)
            torch.testing.assert_close(gemm.mm_nt(x[:3], weight), x[:3] @ w.t(), **tol)
        torch.testing.assert_close(gemm.mm_tn(x, c), x.t() @ c, **tol)  # (k, n)


def test_float64_and_small_products_never_take_onednn():
    cpu = torch.device("cpu")
    assert not gemm.onednn_pays(512, 512, 512, torch.float64, cpu)
    assert not gemm.onednn_pays(8, 8, 8, torch.float32, cpu)
    assert gemm.Weight(torch.randn(512, 512, dtype=torch.float64), 512).packed is None


def test_linear_gradients_match_autograd_of_mm():
    x = _big(64, 256).requires_grad_()
    w = _big(1024, 256).requires_grad_()
    dy = _big(64, 1024)
    got = torch.autograd.grad((gemm.linear(x, w) * dy).sum(), (x, w))
    want = torch.autograd.grad(((x @ w.t()) * dy).sum(), (x, w))
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, atol=2e-3, rtol=1e-4)


CASES = [
    ("lstm", dict(bidirectional=True, proj_size=0)),
    ("lstm", dict(proj_size=96, layer_norm=True, zoneout=0.2, recurrent_dropout=0.3)),
    ("gru", dict(bidirectional=True, recurrent_dropout=0.3)),
    ("gru", dict(reset_after=False, layer_norm=True, zoneout=0.2)),
]


@pytest.mark.parametrize("mode,options", CASES)
def test_scan_in_float32_through_onednn_matches_the_reference(mode, options):
    # Shapes above MIN_ONEDNN_MACS, so the loop's and the backward's products take oneDNN;
    # both engines in float32, so that the regularisers draw the same masks.
    B, H = 48, 160
    assert gemm.onednn_pays(B, H, 3 * H, torch.float32, torch.device("cpu")) == gemm.ONEDNN
    layer = make_layer(mode, input_size=48, hidden_size=H, engine="reference", **options)
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(0.3)  # keep the gates out of saturation so float32 errors stay small
    layer.float()
    x, h0, c0, lengths, grads = make_inputs(layer, T=6, B=B, with_lengths=True)
    args = (x.float(), h0.float(), c0.float(), lengths, tuple(g.float() for g in grads))
    want = run_with_grads(layer, *args)
    layer.engine = "scan"
    got = run_with_grads(layer, *args)
    assert layer.last_engine == "scan"
    assert_same(got, want, atol=2e-4, rtol=1e-3)
