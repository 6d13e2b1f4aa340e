"""Speed of lstmkit's engines against torch.nn, measured in one process, variants interleaved.

For each shape (B, T, F, H) and each variant, a training step (forward + backward) and an
inference pass are timed; every repeat times all variants back to back (so that a slow moment
of the machine hits all of them), and the figure reported is the median over repeats of the
per-repeat ratio  lstmkit time / torch.nn time. A large float32 matmul timed in the same run
gives the machine's GEMM peak, and each variant's share of it (torch.matmul goes to MKL; on
an AMD CPU MKL's sgemm is slower than oneDNN's own kernels, so oneDNN's LSTM can show more
than 100%). Keras 3 on TensorFlow is timed in a subprocess when tensorflow is installed
(keras_speed.py). Prints a table and writes JSON to benchmarks/results/rnn_speed-<date>.json.

    python benchmarks/rnn_speed.py            # every shape (about 15 minutes on 2 cores)
    python benchmarks/rnn_speed.py --quick    # fewer shapes and repeats (under 5 minutes)
    python benchmarks/rnn_speed.py --malloc default   # glibc's settings, not lstmkit's

Nothing else may run on the machine meanwhile: with 2 cores, any other load skews it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import lstmkit.nn as lnn
from lstmkit import runtime
from lstmkit.nn.engines import gemm

SHAPES = [(32, 7, 1, 64), (64, 100, 64, 256), (64, 35, 400, 1150), (1, 1000, 40, 256),
          (256, 50, 128, 512)]
QUICK_SHAPES = [(32, 7, 1, 64), (64, 100, 64, 256), (1, 1000, 40, 256)]

# name -> (mode, lstmkit options, engine); the reference is torch.nn of the same mode.
VARIANTS = {
    "lstm": ("lstm", {}, "auto"),
    "lstm_scan": ("lstm", {}, "scan"),
    "lstm_weight_drop_batch_mask": ("lstm", dict(weight_drop=0.2, recurrent_dropout=0.2,
                                                 recurrent_dropout_mode="per_batch"), "auto"),
    "lstm_recurrent_dropout_layer_norm": ("lstm", dict(recurrent_dropout=0.2, layer_norm=True),
                                          "auto"),
    "lstm_scan_recurrent_dropout": ("lstm", dict(recurrent_dropout=0.2), "auto"),
    "gru": ("gru", {}, "auto"),
    "gru_fused": ("gru", {}, "fused"),
    "gru_scan": ("gru", {}, "scan"),
}


def gemm_flops_per_second(repeats: int = 5) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * 2048 ** 3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rnn_flops(mode: str, B: int, T: int, F: int, H: int, training: bool) -> float:
    """Matmul FLOPs of one layer: forward 2*B*T*G*H*(F+H); backward twice that again."""
    G = 4 if mode == "lstm" else 3
    forward = 2 * B * T * G * H * (F + H)
    return 3 * forward if training else forward


def make_step(module, x: torch.Tensor, training: bool):
    if training:
        module.train()

        def step():
            out, _ = module(x)
            out.sum().backward()
    else:
        module.eval()

        def step():
            with torch.no_grad():
                module(x)
    return step


def bench_shape(shape, variants, repeats: int, min_seconds: float) -> dict:
    B, T, F, H = shape
    x = torch.randn(T, B, F)
    results = {}
    for training in (True, False):
        steps = {"torch_lstm": make_step(torch.nn.LSTM(F, H), x, training),
                 "torch_gru": make_step(torch.nn.GRU(F, H), x, training)}
        for name in variants:
            mode, options, engine = VARIANTS[name]
            cls = lnn.LSTM if mode == "lstm" else lnn.GRU
            steps[name] = make_step(cls(F, H, engine=engine, **options), x, training)
        times = _interleaved(steps, repeats, min_seconds)
        kind = "train" if training else "infer"
        for name in variants:
            mode = VARIANTS[name][0]
            reference = times[f"torch_{mode}"]
            results[f"{name}/{kind}"] = dict(
                ratio=_median_ratio(times[name], reference),
                seconds=statistics.median(times[name]),
                torch_seconds=statistics.median(reference),
                flops=rnn_flops(mode, B, T, F, H, training))
    return results


def _interleaved(steps: dict, repeats: int, min_seconds: float) -> dict[str, list[float]]:
    """Per-call seconds of each step over ``repeats`` rounds; each round times every step
    back to back, enough calls for ``min_seconds`` (a warm-up call first sets that count)."""
    for step in steps.values():
        step()
    calls = {name: max(1, int(min_seconds / max(_timed(step), 1e-6)))
             for name, step in steps.items()}
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            n = calls[name]
            times[name].append(_timed(lambda step=step, n=n: [step() for _ in range(n)]) / n)
    return times


def _median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def bench_streaming(repeats: int, min_seconds: float, steps: int = 200) -> dict:
    """One step per call at batch 1, H=256: lstmkit's step() against nn.LSTM on (1, 1, F)."""
    F, H = 40, 256
    reference = torch.nn.LSTM(F, H).eval()
    ours = lnn.from_torch(reference).eval()
    xs = torch.randn(steps, 1, F)

    def torch_steps():
        state = None
        with torch.no_grad():
            for t in range(steps):
                _, state = reference(xs[t:t + 1], state)

    def our_steps():
        state = None
        with torch.no_grad():
            for t in range(steps):
                _, state = ours.step(xs[t], state)

    times = _interleaved({"torch": torch_steps, "ours": our_steps}, repeats, min_seconds)
    return {"streaming_step(B=1,F=40,H=256)": dict(
        ratio=_median_ratio(times["ours"], times["torch"]),
        seconds=statistics.median(times["ours"]) / steps,
        torch_seconds=statistics.median(times["torch"]) / steps)}


def bench_lengths(shape, bidirectional: bool, repeats: int, min_seconds: float) -> dict:
    """Training on a padded batch with lengths from [T/2, T] against the same batch at full
    length (lstmkit), with torch's packed path against its dense one beside it."""
    from torch.nn.utils.rnn import pack_padded_sequence

    B, T, F, H = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, F)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    reference = torch.nn.LSTM(F, H, bidirectional=bidirectional)
    ours = lnn.from_torch(reference)

    def ours_dense():
        ours(x)[0].sum().backward()

    def ours_lengths():
        ours(x, lengths=lengths)[0].sum().backward()

    def torch_dense():
        reference(x)[0].sum().backward()

    def torch_packed():
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        reference(packed)[0].data.sum().backward()

    times = _interleaved({"ours_dense": ours_dense, "ours_lengths": ours_lengths,
                          "torch_dense": torch_dense, "torch_packed": torch_packed},
                         repeats, min_seconds)
    kind = "bidirectional" if bidirectional else "unidirectional"
    return {f"{shape}/lengths_{kind}/train": dict(
        ratio=_median_ratio(times["ours_lengths"], times["ours_dense"]),
        torch_packed_ratio=_median_ratio(times["torch_packed"], times["torch_dense"]),
        seconds=statistics.median(times["ours_lengths"]),
        torch_seconds=statistics.median(times["torch_packed"]))}


def bench_keras(shapes, rows: dict, repeats: int, min_seconds: float) -> dict:
    """Keras 3 on TensorFlow, in a subprocess (its backend is fixed at import), when
    tensorflow is installed; ratios are lstmkit's median time (this run) / Keras'."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("tensorflow") is None:
        print("\nKeras on TensorFlow: not installed (pip install 'lstmkit[keras-tf]'); skipped")
        return {}
    text = ";".join(",".join(map(str, s)) for s in shapes)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("keras_speed.py")), "--shapes", text,
         "--repeats", str(repeats), "--min-seconds", str(min_seconds)],
        capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        check=True)
    keras_times = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nKeras {keras_times['keras']} on TensorFlow {keras_times['tensorflow']} "
          "(ratio = lstmkit / Keras, same model; Keras timed in its own process)")
    results = {}
    for shape in shapes:
        for ours, theirs in (("lstm", "lstm"), ("gru", "gru"),
                             ("lstm_recurrent_dropout_layer_norm", None),
                             ("lstm_scan_recurrent_dropout", "lstm_recurrent_dropout")):
            for kind in ("train", "infer"):
                key = f"{shape}/{theirs}/{kind}"
                mine = rows.get(f"{shape}/{ours}/{kind}")
                if theirs is None or key not in keras_times or mine is None:
                    continue
                ratio = mine["seconds"] / keras_times[key]
                results[f"{shape}/keras_{theirs}/{kind}"] = dict(
                    ratio=ratio, seconds=mine["seconds"], keras_seconds=keras_times[key])
                print(f"{str(shape):>22} {theirs + '/' + kind:>36} {ratio:7.3f} "
                      f"{keras_times[key] * 1e3:9.2f} ms Keras")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--shapes", help="B,T,F,H;B,T,F,H;... instead of the default list")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep: glibc keeps freed memory, as the lstmkit command sets it "
                             "(lstmkit.runtime.keep_freed_memory; applies to torch.nn too); "
                             "default: glibc's own settings")
    args = parser.parse_args()
    kept = args.malloc == "keep" and runtime.keep_freed_memory()
    torch.manual_seed(0)
    variants = args.variants.split(",")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in part.split(",")) for part in args.shapes.split(";")]
    repeats, min_seconds = (5, 0.05) if args.quick else (9, 0.2)
    peak = gemm_flops_per_second()
    rows = {}
    print(f"GEMM peak {peak / 1e9:.1f} GFLOP/s; ratio = lstmkit / torch.nn (median of "
          f"{repeats} interleaved repeats); % = share of the GEMM peak; freed memory kept "
          f"for reuse: {kept}")
    print(f"{'shape (B,T,F,H)':>22} {'variant':>36} {'ratio':>7} {'ms':>9} {'%peak':>6}")
    for shape in shapes:
        for key, result in bench_shape(shape, variants, repeats, min_seconds).items():
            result["peak_share"] = result["flops"] / result["seconds"] / peak
            rows[f"{shape}/{key}"] = result
            print(f"{str(shape):>22} {key:>36} {result['ratio']:7.3f} "
                  f"{result['seconds'] * 1e3:9.2f} {100 * result['peak_share']:5.0f}%")
    rows |= bench_keras(shapes, rows, repeats, min_seconds)
    print("\nstreaming, one step per call (ratio = lstmkit step() / nn.LSTM on one step)")
    for key, result in bench_streaming(repeats, min_seconds).items():
        rows[key] = result
        print(f"{key:>59} {result['ratio']:7.3f} {result['seconds'] * 1e6:8.1f} us")
    print("\npadded batch, lengths from [T/2, T], training (ratio = with lengths / all T; "
          "torch: packed / dense)")
    for shape in [s for s in shapes if s[0] > 1]:
        for bidirectional in (False, True):
            for key, result in bench_lengths(shape, bidirectional, repeats,
                                             min_seconds).items():
                rows[key] = result
                print(f"{key:>59} {result['ratio']:7.3f}  torch packed "
                      f"{result['torch_packed_ratio']:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"rnn_speed-{stamp}.json"
    meta = dict(torch=torch.__version__, threads=torch.get_num_threads(),
                machine=platform.machine(), gemm_flops_per_second=peak, quick=args.quick,
                malloc_keeps_freed_memory=kept,
                scan_products_on_onednn=gemm.ONEDNN)
    path.write_text(json.dumps(dict(meta=meta, results=rows), indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
