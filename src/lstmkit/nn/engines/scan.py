"""The scan engine: lstmkit's own recurrence, with a hand-written backward through time.

Forward: the input projection W_ih x + b of every time step is one GEMM (T*B rows) before the
loop, so the loop does only the recurrent matmul and the fused element-wise gate maths of
lstmkit.nn.cells. Backward: the classic backpropagation through time of Werbos 1990, written
out by hand per step for the state and gate gradients only; the weight gradients
dW_hh = Σ_t dA_t^T h_{t-1} (and dW_hr, the layer-norm gains) are each one GEMM or one
reduction over all T*B rows after the loop, as in Appleyard et al. 2016 (arXiv:1604.01946) §3
and Haste. dW_ih and dx are left to autograd on the one GEMM of the forward pass. Every
product goes through :mod:`.gemm`, which sends the larger float32 ones on the CPU to oneDNN
with the recurrent weight packed once per call (twice MKL's speed on the machine we measure).

Variable lengths and zoneout share one mechanism: at step t a row keeps a fraction k_t of its
previous state, h_t = k_t h_{t-1} + (1 - k_t) h_new (Krueger et al. 2016, arXiv:1606.01305),
with k_t = 1 at padded steps (the Python loops). The compiled loops instead skip the padded
rows: the rows sorted longest first, they take x packed as PackedSequence.data holds it
(_packed_rows), so that the input projection and the weight gradients cover only the rows
that run. The reverse direction runs the forward recursion over each sequence flipped
within its own length. Layer normalisation (Ba et al. 2016) has its backward written here
too: dx = rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ x̂)).

The backward gives first derivatives only: create_graph=True raises, and second derivatives
need the reference or fused engine.

The time loops exist twice: in C++ (native_scan.cpp, loaded by :mod:`.native`), which runs on
the CPU wherever it could be built, and here in Python, which runs elsewhere (CUDA, no
compiler, ``LSTMKIT_NATIVE=0``). Both keep the same buffers and return the same gradients
(tests/nn/test_native.py compares them over every option); the prologue (input projection)
and the epilogue (weight gradients as GEMMs) are shared.

At ~670 lines the module runs past our 600-line guide (STYLE.md R10): both cells' Python
loops and their native twins share the prologue, the epilogue and the buffers' layout, which
one module keeps in view.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import LAYER_NORM_EPS
from . import (
    DirectionMasks,
    DirectionParams,
    DirectionResult,
    RecurrentSpec,
    RunResult,
    gemm,
    native,
    reverse_within_lengths,
    run_stack,
)


def run(
    x: Tensor,
    lengths: Tensor | None,
    hx: tuple[Tensor, Tensor | None],
    params: list[DirectionParams],
    masks: list[DirectionMasks],
    spec: RecurrentSpec,
    training: bool,
) -> RunResult:
    """Run the stack over x (T, B, F); see :func:`lstmkit.nn.engines.run_stack`."""
    if lengths is not None and int(lengths.min()) == x.shape[0]:
        lengths = None  # every row runs every step: nothing to skip or mask
    skip = lengths is not None and compiled_loops_run(x)  # the recurrence runs in x's dtype
    runner = partial(_run_direction, skip_padding=True) if skip else _run_direction
    return run_stack(runner, x, lengths, hx, params, masks, spec, training)


def _rows_of(t: Tensor | None, rows: Tensor | None, dim: int) -> Tensor | None:
    """A per-row tensor reordered like the batch; shared ones (size 1 on ``dim``) as they are."""
    if t is None or rows is None or t.shape[dim] == 1:
        return t
    return t.index_select(dim, rows)


def _reverse_mask(mask: Tensor | None, lengths: Tensor | None, training: bool
                  ) -> Tensor | None:
    # Eval-mode zoneout masks, (T, 1, 1), hold one constant: nothing to flip. (Not told apart
    # by shape: a training mask of one sequence is (T, 1, R), and (T, 1, 1) when R = 1.)
    if mask is None or not training:
        return mask
    return reverse_within_lengths(mask, lengths)


def _keep_fraction(zoneout: Tensor | None, valid: Tensor | None, dtype: torch.dtype
                   ) -> Tensor | None:
    """k_t in ``dtype``: the fraction of the previous state each row keeps; 1 at padded steps."""
    if valid is None:
        return None if zoneout is None else zoneout.to(dtype)
    if zoneout is None:
        return (~valid).to(dtype)  # (T, B, 1)
    return (1 - valid * (1 - zoneout)).to(dtype)  # (T, B, R)


def _run_direction(
    x: Tensor,
    lengths: Tensor | None,
    h0: Tensor,
    c0: Tensor | None,
    p: DirectionParams,
    m: DirectionMasks,
    spec: RecurrentSpec,
    training: bool,
    reverse: bool,
    skip_padding: bool = False,
) -> DirectionResult:
    """One layer-direction. ``skip_padding`` (rows sorted longest first, compiled loops): the
    loops run only the rows inside their length at each step, instead of every row with a
    keep fraction of 1 at padded steps, and take x packed (_packed_rows)."""
    T, B, _ = x.shape
    if reverse:
        m = m._replace(zoneout_h=_reverse_mask(m.zoneout_h, lengths, training),
                       zoneout_c=_reverse_mask(m.zoneout_c, lengths, training))
    valid = None
    if lengths is not None:
        steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
        valid = (steps < lengths.to(x.device).unsqueeze(0)).unsqueeze(2)  # (T, B, 1)
    active = rows = None
    if skip_padding:
        x, active, rows, h0, c0, m = _longest_rows_first(x, lengths, h0, c0, m, reverse)
    elif reverse:
        x = reverse_within_lengths(x, lengths)
    padding = None if skip_padding else valid  # padded steps as keep fractions of 1
    keep_h = _keep_fraction(m.zoneout_h, padding, x.dtype)
    xg, b_hh = _input_projection(x, p, spec.mode)
    # Keep per-step buffers for a backward pass only when one can follow.
    save = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (xg, h0, c0, *p))
    if spec.mode == "lstm":
        keep_c = _keep_fraction(m.zoneout_c, padding, x.dtype)
        hs, c_n = _LSTMScan.apply(save, xg, h0, c0, p.w_hh, b_hh, p.ln_hh, p.w_hr, p.ln_cell_weight,
                                  p.ln_cell_bias, m.recurrent, keep_h, keep_c, active)
    else:
        hs = _GRUScan.apply(save, xg, h0, p.w_hh, b_hh, p.ln_hh, m.recurrent, keep_h,
                            spec.reset_after, active)
        c_n = None
    if rows is not None:  # back to the caller's row order
        restore = torch.argsort(rows)
        hs, c_n = hs.index_select(1, restore), _rows_of(c_n, restore, 0)
    output = hs if valid is None else hs * valid  # (T, B, R), zero at padded steps
    if reverse:
        output = reverse_within_lengths(output, lengths)
    return DirectionResult(output, hs[-1], c_n)


def _longest_rows_first(x: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor | None,
                        m: DirectionMasks, reverse: bool):
    """The rows sorted longest first, so that the rows still running at step t are the first
    active[t]: the compiled loops multiply only those and carry the others' state unchanged.
    Sorted here, per direction, so that the dropout between layers sees the rows in the
    caller's order (the same draws as the other engines). Returns x packed (_packed_rows),
    active, the order (None where the rows were sorted already), and h0, c0 and the masks
    in that order."""
    order = torch.argsort(lengths, descending=True, stable=True)  # (B,), CPU
    x, active = _packed_rows(x, lengths, order, reverse)
    if bool((order == torch.arange(order.shape[0])).all()):
        return x, active, None, h0, c0, m
    rows = order.to(x.device)
    m = m._replace(recurrent=_rows_of(m.recurrent, rows, 0),
                   zoneout_h=_rows_of(m.zoneout_h, rows, 1),
                   zoneout_c=_rows_of(m.zoneout_c, rows, 1))
    return x, active, rows, h0.index_select(0, rows), _rows_of(c0, rows, 0), m


def _packed_rows(x: Tensor, lengths: Tensor, order: Tensor, reverse: bool
                 ) -> tuple[Tensor, list[int]]:
    """x (T, B, F) as the compiled loops take it with skipped rows: (N, F), step t's running
    rows one after another in ``order`` (longest first), as PackedSequence.data holds them;
    each sequence flipped within its length when ``reverse``. One gather: the input
    projection and, in backward, the weight gradients then cover the N rows that run, not
    the T * B of the padded batch. Returns it and active, the rows running at each step."""
    T, B, F_in = x.shape
    sorted_lengths = lengths[order]  # (B,), CPU
    steps = torch.arange(T).unsqueeze(1)  # (T, 1)
    running = steps < sorted_lengths.unsqueeze(0)  # (T, B), columns in `order`
    source_step = sorted_lengths.unsqueeze(0) - 1 - steps if reverse else steps
    flat = (source_step * B + order.unsqueeze(0))[running]  # (N,), time-major
    return x.reshape(T * B, F_in).index_select(0, flat.to(x.device)), running.sum(1).tolist()


def _input_projection(x: Tensor, p: DirectionParams, mode: str) -> tuple[Tensor, Tensor | None]:
    """xg (..., G*H): the input projection of every step in one GEMM, (rows, F) @ (F, G*H),
    of x (T, B, F) or packed (N, F), with the biases that add to it; and the b_hh left to the
    recurrence (the GRU's; the LSTM's only beside a layer norm of W_hh h, else it simply adds
    to the pre-activations)."""
    F_in = x.shape[-1]
    b_hh, late_bias = p.b_hh, None
    bias = p.b_ih if p.ln_ih is None else None
    if mode == "lstm" and b_hh is not None and p.ln_hh is None:
        if p.ln_ih is None:
            bias = b_hh if bias is None else bias + b_hh
        else:
            late_bias = b_hh
        b_hh = None
    xg = gemm.linear(x.reshape(-1, F_in), p.w_ih, bias)  # (rows, G*H)
    if p.ln_ih is not None:  # gain ⊙ LN(W_ih x) + b_ih in one kernel
        xg = F.layer_norm(xg, xg.shape[-1:], p.ln_ih, p.b_ih, LAYER_NORM_EPS)
    if late_bias is not None:
        xg = xg + late_bias
    # Under autocast the projection comes out in a lower precision; the recurrence runs in the
    # input's dtype, that of its state and buffers (autocast lowers the projection only).
    return xg.reshape(*x.shape[:-1], -1).to(x.dtype), b_hh


def compiled_loops_run(xg: Tensor) -> bool:
    """Whether the compiled loops (native.py) run this tensor's recurrence."""
    return (xg.device.type == "cpu" and xg.dtype in (torch.float32, torch.float64)
            and native.available())


def _check_active(active: list[int] | None, native_loops: bool) -> None:
    # Skipped rows carry no keep fraction at padded steps: only the compiled loops honour
    # ``active``; the Python loops would run the padded steps as ordinary ones.
    if active and not native_loops:
        raise RuntimeError("lstmkit internal error: rows were set to be skipped for loops that "
                           "cannot skip them; please report it.")


def _steps(xg: Tensor, active: list[int]) -> int:
    """The time steps of the compiled loops' xg: (T, B, G), or (N, G) packed with active."""
    return len(active) if active else xg.shape[0]


def _dense(t: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
    """A broadcastable mask as the compiled loops read it: ``shape``, contiguous, like's dtype."""
    if t is None:
        return None
    return t.to(like.dtype).expand(shape).contiguous()


def _refuse_double_backward() -> None:
    # Grad mode is on inside a backward only under create_graph=True. The loops write into
    # buffers, so no graph of the backward exists: say so rather than return a partial one.
    if torch.is_grad_enabled():
        raise RuntimeError("engine='scan' computes first derivatives only (its backward is "
                           "hand-written; engine='auto' runs the ragged steps of a batch with "
                           "lengths on it on the CPU); for create_graph=True use "
                           "engine='reference' or engine='fused'.")


def _ln_forward(y: Tensor) -> tuple[Tensor, Tensor]:
    """x̂ = (y - mean) * rstd over the last dimension; returns x̂ and rstd (..., 1)."""
    xhat, _, rstd = torch.native_layer_norm(y, y.shape[-1:], None, None, LAYER_NORM_EPS)
    return xhat, rstd.view(*y.shape[:-1], 1)


def _ln_backward(dz: Tensor, gain: Tensor, xhat: Tensor, rstd: Tensor) -> Tensor:
    """Gradient through z = gain ⊙ x̂, x̂ = LN(y), given dL/dz; returns dL/dy.

    dL/dy = rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ x̂)) with dx̂ = gain ⊙ dL/dz: torch's one-kernel
    layer-norm backward run on x̂ itself (mean 0, rstd 1), then scaled by the saved rstd.
    """
    rows = xhat.shape[0]
    unit = xhat.new_zeros(rows, 1), xhat.new_ones(rows, 1)
    dy = torch.ops.aten.native_layer_norm_backward(dz, xhat, xhat.shape[-1:], *unit, gain, None,
                                                   [True, False, False])[0]
    return dy.mul_(rstd)


def _sum_bt(t: Tensor) -> Tensor:
    return t.sum(dim=(0, 1))


def _gemm_bt(a: Tensor, b: Tensor) -> Tensor:
    """Σ over the rows of a^T b as one GEMM: (T, B, M), (T, B, N) or packed (N_rows, M),
    (N_rows, N) -> (M, N)."""
    return gemm.mm_tn(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))


class _LSTMScan(torch.autograd.Function):
    """The LSTM recurrence given xg = W_ih x + b (T, B, 4H), or packed (N, 4H) with ``active``
    (compiled loops, see _packed_rows); returns hs (T, B, R), c_T (B, H).

    b_hh is None unless the recurrent matmul is layer-normalised (otherwise folded into xg).
    The loops are longer than our 50-line guide because splitting a step across functions
    costs a Python call per step in the hottest loop of the package.
    """

    @staticmethod
    def forward(ctx, save, xg, h0, c0, w_hh, b_hh, ln_hh, w_hr, ln_cw, ln_cb, mask, keep_h,
                keep_c, active=None):
        # active (compiled loops only): rows running at each step, see _run_direction.
        ctx.native = compiled_loops_run(xg)
        _check_active(active, ctx.native)
        ctx.active = active or []
        if ctx.native:
            return _LSTMScan._native_forward(ctx, save, xg, h0, c0, w_hh, b_hh, ln_hh, w_hr,
                                             ln_cw, ln_cb, mask, keep_h, keep_c)
        T, B, G = xg.shape
        H = G // 4
        h_all = xg.new_empty(T + 1, B, h0.shape[1])  # (T+1, B, R): h_all[t] = h_{t-1}
        h_all[0] = h0
        # Results are written in place (out=) into what backward keeps; without a backward, c
        # and tanh(ĉ) go round small buffers instead of T-long ones.
        c_all = xg.new_empty(T + 1 if save else 2, B, H)  # c_all[t] = c_{t-1}
        c_all[0] = c0
        acts = xg.new_empty(T, B, G) if save else xg.new_empty(1, B, G)  # i, f, g, o
        tanh_c = xg.new_empty(T if save else 1, B, H)  # tanh(ĉ_t)
        h_in_all = xg.new_empty(T, B, h0.shape[1]) if save and mask is not None else None
        ln_h = (xg.new_empty(T, B, G), xg.new_empty(T, B, 1)) if save and ln_hh is not None \
            else None
        ln_c = (xg.new_empty(T, B, H), xg.new_empty(T, B, 1)) if save and ln_cw is not None \
            else None
        if b_hh is not None:
            xg = xg + b_hh  # b_hh adds after the layer norm: once for all steps
        w_rec = gemm.Weight(w_hh, B)  # packed once for the T products below
        w_proj = None if w_hr is None else gemm.Weight(w_hr, B)
        h, c = h0, c0
        for t in range(T):
            h_in = h if mask is None else h * mask
            if h_in_all is not None:
                h_in_all[t] = h_in
            if ln_hh is None:
                gates = gemm.addmm_nt(xg[t], h_in, w_rec)  # (B, 4H)
            else:
                xhat, rstd = _ln_forward(gemm.mm_nt(h_in, w_rec))
                if ln_h is not None:
                    ln_h[0][t], ln_h[1][t] = xhat, rstd
                gates = torch.addcmul(xg[t], xhat, ln_hh)  # b_hh is in xg (see above)
            a = acts[t] if save else acts[0]  # (B, 4H)
            torch.sigmoid(gates, out=a)
            torch.tanh(gates[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
            i, f, g, o = a.chunk(4, dim=1)
            c_next = c_all[t + 1] if save else c_all[(t + 1) % 2]
            if keep_c is None:
                c_new = torch.addcmul(f * c, i, g, out=c_next)  # c' = f ⊙ c + i ⊙ g
            else:
                c_new = torch.addcmul(f * c, i, g)
            c_hat = c_new
            if ln_cw is not None:
                xhat, rstd = _ln_forward(c_new)
                if ln_c is not None:
                    ln_c[0][t], ln_c[1][t] = xhat, rstd
                c_hat = torch.addcmul(ln_cb, xhat, ln_cw) if ln_cb is not None else xhat * ln_cw
            tc = torch.tanh(c_hat, out=tanh_c[t] if save else tanh_c[0])
            if w_hr is not None:
                h_new = gemm.mm_nt(o * tc, w_proj)  # (B, P)
                h = h_new if keep_h is None else torch.lerp(h_new, h, keep_h[t])
                h_all[t + 1] = h
            elif keep_h is None:
                h = torch.mul(o, tc, out=h_all[t + 1])  # (B, H)
            else:
                h = torch.lerp(o * tc, h, keep_h[t], out=h_all[t + 1])
            c = c_new if keep_c is None else torch.lerp(c_new, c, keep_c[t], out=c_next)
        c = c.clone()  # c_T, returned: not a view of the buffer backward keeps
        if save:
            ctx.save_for_backward(h_all, c_all, acts, tanh_c, h_in_all, w_hh, ln_hh, w_hr, ln_cw,
                                  mask, keep_h, keep_c,
                                  *(ln_h or (None, None)), *(ln_c or (None, None)))
            ctx.has_b_hh = b_hh is not None
        return h_all[1:], c

    @staticmethod
    def _native_forward(ctx, save, xg, h0, c0, w_hh, b_hh, ln_hh, w_hr, ln_cw, ln_cb, mask,
                        keep_h, keep_c):
        """forward through the compiled loop (native_scan.cpp); same buffers, same maths.
        xg (T, B, 4H), or packed (N, 4H) with ctx.active (see _packed_rows)."""
        T, (B, R), G = _steps(xg, ctx.active), h0.shape, xg.shape[-1]
        H = G // 4
        mask, keep_h, keep_c = (_dense(mask, (B, R), xg), _dense(keep_h, (T, B, R), xg),
                                _dense(keep_c, (T, B, H), xg))
        w_rec = gemm.Weight(w_hh, B)
        w_proj = None if w_hr is None else gemm.Weight(w_hr, B)
        (h_all, c_n, c_all, acts, tanh_c, h_in_all, xhat_h, rstd_h, xhat_c,
         rstd_c) = torch.ops.lstmkit_native.lstm_forward(
            xg.contiguous(), h0.contiguous(), c0.contiguous(), w_hh, w_rec.packed, b_hh, ln_hh,
            w_hr,
            None if w_proj is None else w_proj.packed, ln_cw, ln_cb, mask, keep_h, keep_c,
            ctx.active, save)
        if save:
            kept = mask is not None or ctx.active  # h_in_all, as lstm_forward keeps it
            ctx.save_for_backward(h_all, c_all, acts, tanh_c, h_in_all if kept else None, w_hh,
                                  ln_hh, w_hr, ln_cw, mask, keep_h, keep_c,
                                  *((xhat_h, rstd_h) if ln_hh is not None else (None, None)),
                                  *((xhat_c, rstd_c) if ln_cw is not None else (None, None)))
            ctx.has_b_hh = b_hh is not None
        return h_all[1:], c_n

    @staticmethod
    def backward(ctx, grad_hs, grad_c_n):
        _refuse_double_backward()
        (h_all, c_all, acts, tanh_c, h_in_all, w_hh, ln_hh, w_hr, ln_cw, mask, keep_h, keep_c,
         xhat_h, rstd_h, xhat_c, rstd_c) = ctx.saved_tensors
        T, B, G = acts.shape
        H = G // 4
        if ctx.native:
            w_hh_t = w_hh.t().contiguous()
            w_hr_t = None if w_hr is None else w_hr.t().contiguous()
            d_gates, d_raw, d_h_new, dh, dc, *sums = torch.ops.lstmkit_native.lstm_backward(
                grad_hs.contiguous(), grad_c_n.contiguous(), c_all, acts, tanh_c, w_hh_t,
                gemm.Weight(w_hh_t, B).packed, ln_hh, xhat_h, rstd_h, w_hr_t,
                None if w_hr_t is None else gemm.Weight(w_hr_t, B).packed, ln_cw, xhat_c,
                rstd_c, mask, keep_h, keep_c, ctx.active)
            if ln_hh is None:
                d_raw = d_gates
            return _LSTMScan._weight_grads(ctx, d_gates, d_raw, d_h_new, dh, dc, h_all,
                                           h_in_all, acts, tanh_c, w_hr, sums)
        d_gates = torch.empty_like(acts)  # (T, B, 4H): dL/d(pre-activations) = dL/dxg
        d_raw = d_gates if ln_hh is None else torch.empty_like(acts)  # dL/d(W_hh h_in)
        d_h_new = h_all.new_empty(T, B, w_hr.shape[0]) if w_hr is not None else None
        d_c_hat = tanh_c.new_empty(T, B, H) if ln_cw is not None else None
        # What each step multiplies its incoming gradients by, for all steps at once (a few
        # large element-wise ops instead of twenty small ones per step):
        sig_d = acts * (1 - acts)  # σ'(a) for i, f, o (the g block is not used)
        i_all, f_all, g_all = acts[..., :H], acts[..., H:2 * H], acts[..., 2 * H:3 * H]
        by_dc = torch.stack([g_all * sig_d[..., :H], c_all[:-1] * sig_d[..., H:2 * H],
                             i_all * (1 - g_all * g_all)], dim=2)  # (T, B, 3, H): i, f, g
        by_dr = tanh_c * sig_d[..., 3 * H:]  # (T, B, H): dL/da_o = dr tanh(ĉ) σ'(o)
        dr_to_c = acts[..., 3 * H:] * (1 - tanh_c * tanh_c)  # dL/dĉ = dr o (1 - tanh²(ĉ))
        drop_h = None if keep_h is None else 1 - keep_h
        drop_c = None if keep_c is None else 1 - keep_c
        # dh = d_raw @ W_hh written as x @ w.T: w = W_hh^T (R, 4H), packed once; W_hr^T (H, P).
        w_hh_tt = gemm.Weight(w_hh.t().contiguous(), B)
        w_hr_tt = None if w_hr is None else gemm.Weight(w_hr.t().contiguous(), B)
        dh = torch.zeros_like(h_all[0])  # (B, R), carried from step t+1
        dc = grad_c_n.clone()  # (B, H)
        for t in reversed(range(T)):
            dh = dh + grad_hs[t]
            dh_prev = None
            if keep_h is not None:
                dh, dh_prev = dh * drop_h[t], dh * keep_h[t]
            dc_prev = None
            if keep_c is not None:
                dc, dc_prev = dc * drop_c[t], dc * keep_c[t]
            if w_hr is not None:
                d_h_new[t] = dh
                dh = gemm.mm_nt(dh, w_hr_tt)  # (B, H): dL/dr, r = o ⊙ tanh(ĉ)
            dc_hat = dh * dr_to_c[t]
            if ln_cw is not None:
                d_c_hat[t] = dc_hat
                dc_hat = _ln_backward(dc_hat, ln_cw, xhat_c[t], rstd_c[t])
            dc = dc + dc_hat
            step = d_gates[t]  # (B, 4H)
            torch.mul(by_dc[t], dc.unsqueeze(1), out=step[:, :3 * H].view(B, 3, H))
            torch.mul(by_dr[t], dh, out=step[:, 3 * H:])
            dc = dc * f_all[t] if dc_prev is None else torch.addcmul(dc_prev, dc, f_all[t])
            if ln_hh is not None:
                d_raw[t] = _ln_backward(step, ln_hh, xhat_h[t], rstd_h[t])
            dh = gemm.mm_nt(d_raw[t], w_hh_tt)  # (B, R)
            if mask is not None:
                dh = dh * mask
            if dh_prev is not None:
                dh = dh + dh_prev
        sums = (_sum_bt(d_gates) if ln_hh is not None else None,
                _sum_bt(d_gates * xhat_h) if ln_hh is not None else None,
                _sum_bt(d_c_hat * xhat_c) if ln_cw is not None else None,
                _sum_bt(d_c_hat) if ln_cw is not None else None)
        return _LSTMScan._weight_grads(ctx, d_gates, d_raw, d_h_new, dh, dc, h_all, h_in_all,
                                       acts, tanh_c, w_hr, sums)

    @staticmethod
    def _weight_grads(ctx, d_gates, d_raw, d_h_new, dh, dc, h_all, h_in_all, acts, tanh_c,
                      w_hr, sums):
        """backward's answer from the loop's gradients: weight gradients as one GEMM each.

        ``sums``: the layer-norm case's sums over steps and rows, dL/db_hh, dL/d ln_hh,
        dL/d ln_cw, dL/d ln_cb (None or empty where the option is off), which the compiled
        loops add up as they go."""
        H = tanh_c.shape[-1]
        h_in = h_all[:-1] if h_in_all is None else h_in_all  # (T, B, R) or packed (N, R)
        need = ctx.needs_input_grad[1:]  # [0] is the save flag
        d_w_hh = _gemm_bt(d_raw, h_in) if need[3] else None  # (4H, R), one GEMM
        d_w_hr = None
        if w_hr is not None and need[6]:
            d_w_hr = _gemm_bt(d_h_new, acts[..., 3 * H:] * tanh_c)  # (P, H), r_t = o ⊙ tanh(ĉ)
        d_b_hh, d_ln_hh, d_ln_cw, d_ln_cb = (
            t if t is not None and t.numel() and need[k] else None
            for t, k in zip(sums, (4, 5, 7, 8), strict=True))
        if not ctx.has_b_hh:
            d_b_hh = None
        return (None, d_gates, dh, dc, d_w_hh, d_b_hh, d_ln_hh, d_w_hr, d_ln_cw, d_ln_cb,
                None, None, None, None)


class _GRUScan(torch.autograd.Function):
    """The GRU recurrence given xg = W_ih x + b_ih (T, B, 3H), or packed (N, 3H) with
    ``active``; returns hs (T, B, H).

    Long loops for the reason given in _LSTMScan.
    """

    @staticmethod
    def forward(ctx, save, xg, h0, w_hh, b_hh, ln_hh, mask, keep_h, reset_after, active=None):
        ctx.native = compiled_loops_run(xg)
        _check_active(active, ctx.native)
        ctx.active = active or []
        if ctx.native:
            return _GRUScan._native_forward(ctx, save, xg, h0, w_hh, b_hh, ln_hh, mask, keep_h,
                                            reset_after)
        T, B, G = xg.shape
        H = G // 3
        h_all = xg.new_empty(T + 1, B, H)  # (T+1, B, H): h_all[t] = h_{t-1}
        h_all[0] = h0
        # Written in place (out=); without a backward, one-step buffers are reused.
        steps = T if save else 1
        rzn = xg.new_empty(steps, B, G)  # r, z, n
        # reset_after: the recurrent pre-activations W_hh h_in + b_hh (B, 3H), whose last third
        # is hn; otherwise s = r ⊙ h_in (B, H), the input of W_hn.
        rec = xg.new_empty(steps, B, G if reset_after else H)
        h_in_all = xg.new_empty(T, B, H) if save and mask is not None else None
        ln_stats = (xg.new_empty(T, B, G), xg.new_empty(T, B, 2)) if save and ln_hh is not None \
            else None
        # The recurrent weight, packed once for the T products: all gates (reset_after), or
        # the r, z rows and the n rows apart (s = r ⊙ h_in multiplies the n rows only).
        w_rec = (gemm.Weight(w_hh, B),) if reset_after else \
            (gemm.Weight(w_hh[:2 * H], B), gemm.Weight(w_hh[2 * H:], B))
        h = h0
        for t in range(T):
            k = t if save else 0
            h_in = h if mask is None else h * mask
            if h_in_all is not None:
                h_in_all[t] = h_in
            x_rz, x_n = xg[t, :, :2 * H], xg[t, :, 2 * H:]
            rz, n = rzn[k, :, :2 * H], rzn[k, :, 2 * H:]  # (B, 2H), (B, H)
            if reset_after:
                hg = _gru_recurrent(h_in, w_rec[0], b_hh, ln_hh, ln_stats, t, slice(0, G), 0,
                                    out=rec[k])  # (B, 3H)
                torch.add(x_rz, hg[:, :2 * H], out=rz).sigmoid_()
                torch.addcmul(x_n, rz[:, :H], hg[:, 2 * H:], out=n).tanh_()  # r ⊙ hn
            else:
                hg = _gru_recurrent(h_in, w_rec[0], b_hh, ln_hh, ln_stats, t, slice(0, 2 * H),
                                    0)
                torch.add(x_rz, hg, out=rz).sigmoid_()
                s_in = torch.mul(rz[:, :H], h_in, out=rec[k])  # s = r ⊙ h_in
                torch.add(x_n, _gru_recurrent(s_in, w_rec[1], b_hh, ln_hh, ln_stats, t,
                                              slice(2 * H, G), 1), out=n).tanh_()
            if keep_h is None:
                h = torch.lerp(n, h, rz[:, H:], out=h_all[t + 1])  # (1 - z) ⊙ n + z ⊙ h
            else:
                h = torch.lerp(torch.lerp(n, h, rz[:, H:]), h, keep_h[t], out=h_all[t + 1])
        if save:
            ctx.save_for_backward(h_all, rzn, rec, h_in_all, w_hh, ln_hh, mask, keep_h,
                                  *(ln_stats or (None, None)))
            ctx.reset_after, ctx.has_b_hh = reset_after, b_hh is not None
        return h_all[1:]

    @staticmethod
    def _native_forward(ctx, save, xg, h0, w_hh, b_hh, ln_hh, mask, keep_h, reset_after):
        """forward through the compiled loop (native_scan.cpp); same buffers, same maths.
        xg (T, B, 3H), or packed (N, 3H) with ctx.active (see _packed_rows)."""
        T, B, G = _steps(xg, ctx.active), h0.shape[0], xg.shape[-1]
        H = G // 3
        mask, keep_h = _dense(mask, (B, H), xg), _dense(keep_h, (T, B, H), xg)
        # All gates' rows (reset_after), or the r, z rows and the n rows apart.
        w_a, w_b = (w_hh, None) if reset_after else (w_hh[:2 * H], w_hh[2 * H:])
        packed_b = None if w_b is None else gemm.Weight(w_b, B).packed
        h_all, rzn, rec, h_in_all, xhat, rstd = torch.ops.lstmkit_native.gru_forward(
            xg.contiguous(), h0.contiguous(), w_a, gemm.Weight(w_a, B).packed, w_b, packed_b,
            b_hh, ln_hh, mask, keep_h, reset_after, ctx.active, save)
        if save:
            kept = mask is not None or ctx.active  # h_in_all, as gru_forward keeps it
            ctx.save_for_backward(h_all, rzn, rec, h_in_all if kept else None, w_hh,
                                  ln_hh, mask, keep_h,
                                  *((xhat, rstd) if ln_hh is not None else (None, None)))
            ctx.reset_after, ctx.has_b_hh = reset_after, b_hh is not None
        return h_all[1:]

    @staticmethod
    def backward(ctx, grad_hs):
        _refuse_double_backward()
        h_all, rzn, rec, h_in_all, w_hh, ln_hh, mask, keep_h, xhat, rstd = ctx.saved_tensors
        T, B, G = rzn.shape
        H = G // 3
        ra = ctx.reset_after
        if ctx.native:
            w_a_t = (w_hh if ra else w_hh[:2 * H]).t().contiguous()
            w_b_t = None if ra else w_hh[2 * H:].t().contiguous()
            d_x, d_hg, d_raw, dh, *sums = torch.ops.lstmkit_native.gru_backward(
                grad_hs.contiguous(), h_all, rzn, rec, h_in_all, w_a_t,
                gemm.Weight(w_a_t, B).packed, w_b_t,
                None if w_b_t is None else gemm.Weight(w_b_t, B).packed, ln_hh, xhat, rstd,
                mask, keep_h, ra, ctx.active)
            d_hg = d_hg if ra else d_x
            d_raw = d_raw if ln_hh is not None else d_hg
            return _GRUScan._weight_grads(ctx, d_x, d_raw, dh, h_all, h_in_all, rec, sums)
        d_x = torch.empty_like(rzn)  # (T, B, 3H): dL/dxg
        d_hg = d_x if not ra else torch.empty_like(rzn)  # dL/d(recurrent pre-activations)
        d_raw = d_hg if ln_hh is None else torch.empty_like(rzn)  # dL/d(W_hh input)
        # Per-step factors for all steps at once: dL/d(pre-activations) = dh * factor.
        r_all, z_all, n_all = rzn[..., :H], rzn[..., H:2 * H], rzn[..., 2 * H:]
        by_n = (1 - z_all) * (1 - n_all * n_all)  # n: through h' = (1 - z) n + z h, tanh'
        by_z = (h_all[:-1] - n_all) * z_all * (1 - z_all)  # z: σ'
        if ra:  # r: through n = tanh(x_n + r ⊙ hn)
            by_r = by_n * rec[..., 2 * H:] * r_all * (1 - r_all)  # rec[..., 2H:] = hn
            to_x = torch.stack([by_r, by_z, by_n], dim=2)  # (T, B, 3, H)
            to_hg = torch.stack([by_r, by_z, by_n * r_all], dim=2)
        drop_h = None if keep_h is None else 1 - keep_h
        # d @ W_hh[rows] written as x @ w.T with w = W_hh[rows]^T, packed once.
        if ra:
            w_tt = gemm.Weight(w_hh.t().contiguous(), B)  # (H, 3H)
        else:
            w_rz_tt = gemm.Weight(w_hh[:2 * H].t().contiguous(), B)  # (H, 2H)
            w_n_tt = gemm.Weight(w_hh[2 * H:].t().contiguous(), B)  # (H, H)
        dh = torch.zeros_like(h_all[0])
        for t in reversed(range(T)):
            dh = dh + grad_hs[t]
            dh_prev = None
            if keep_h is not None:
                dh, dh_prev = dh * drop_h[t], dh * keep_h[t]
            carry = dh * z_all[t]  # through h' = (1 - z) ⊙ n + z ⊙ h
            if ra:
                dh_b = dh.unsqueeze(1)  # (B, 1, H)
                torch.mul(to_x[t], dh_b, out=d_x[t].view(B, 3, H))
                torch.mul(to_hg[t], dh_b, out=d_hg[t].view(B, 3, H))
                _gru_raw_grad(d_hg, d_raw, ln_hh, xhat, rstd, t, slice(0, G), 0)
                dh_in = gemm.mm_nt(d_raw[t], w_tt)  # (B, H)
            else:
                r = r_all[t]
                h_in = h_all[t] if h_in_all is None else h_in_all[t]
                torch.mul(by_n[t], dh, out=d_x[t, :, 2 * H:])
                _gru_raw_grad(d_hg, d_raw, ln_hh, xhat, rstd, t, slice(2 * H, G), 1)
                ds = gemm.mm_nt(d_raw[t, :, 2 * H:], w_n_tt)  # (B, H): dL/d(r ⊙ h_in)
                d_x[t, :, :H] = ds * h_in * r * (1 - r)
                torch.mul(by_z[t], dh, out=d_x[t, :, H:2 * H])
                _gru_raw_grad(d_hg, d_raw, ln_hh, xhat, rstd, t, slice(0, 2 * H), 0)
                dh_in = gemm.mm_nt(d_raw[t, :, :2 * H], w_rz_tt) + ds * r
            dh = dh_in if mask is None else dh_in * mask
            dh = dh + carry if dh_prev is None else dh + carry + dh_prev
        sums = (_sum_bt(d_hg), _sum_bt(d_hg * xhat) if ln_hh is not None else None)
        return _GRUScan._weight_grads(ctx, d_x, d_raw, dh, h_all, h_in_all, rec, sums)

    @staticmethod
    def _weight_grads(ctx, d_x, d_raw, dh, h_all, h_in_all, rec, sums):
        """backward's answer from the loop's gradients: weight gradients as one GEMM each.

        ``sums``: dL/db_hh and dL/d ln_hh (None or empty without layer norm), summed over
        steps and rows (by the compiled loops as they go)."""
        H, ra = h_all.shape[-1], ctx.reset_after
        need = ctx.needs_input_grad[1:]  # [0] is the save flag
        h_in = h_all[:-1] if h_in_all is None else h_in_all  # (T, B, H) or packed (N, H)
        d_w_hh = None
        if need[2] and ra:
            d_w_hh = _gemm_bt(d_raw, h_in)  # (3H, H), one GEMM
        elif need[2]:
            d_w_hh = torch.cat([_gemm_bt(d_raw[..., :2 * H], h_in),
                                _gemm_bt(d_raw[..., 2 * H:], rec)])  # rec = s
        d_b_hh = sums[0] if ctx.has_b_hh and need[3] else None
        d_ln = sums[1] if sums[1] is not None and sums[1].numel() and need[4] else None
        return None, d_x, dh, d_w_hh, d_b_hh, d_ln, None, None, None, None


def _gru_recurrent(h_in, w, b_hh, ln_hh, ln_stats, t, cols, group, out=None):
    """W h_in (+ LN, gain) + b, w the gemm.Weight of W_hh's gate rows ``cols``; saves LN
    statistics."""
    b = None if b_hh is None else b_hh[cols]
    if ln_hh is None:
        y = gemm.mm_nt(h_in, w, b)  # (B, |cols|)
        return y if out is None else out.copy_(y)
    xhat, rstd = _ln_forward(gemm.mm_nt(h_in, w))
    if ln_stats is not None:
        ln_stats[0][t, :, cols], ln_stats[1][t, :, group:group + 1] = xhat, rstd
    y = xhat * ln_hh[cols]
    y = y if b is None else y + b
    return y if out is None else out.copy_(y)


def _gru_raw_grad(d_hg, d_raw, ln_hh, xhat, rstd, t, cols, group):
    """dL/d(W h_in) over ``cols`` from dL/d(recurrent pre-activation), through the layer norm."""
    if ln_hh is not None:
        d_raw[t, :, cols] = _ln_backward(d_hg[t, :, cols], ln_hh[cols], xhat[t, :, cols],
                                         rstd[t, :, group:group + 1])
