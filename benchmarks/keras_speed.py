"""Keras 3 on its TensorFlow backend: the same LSTM/GRU timings as rnn_speed.py measures.

Run by rnn_speed.py in a subprocess (Keras picks its backend at import), when tensorflow is
installed (`pip install 'lstmkit[keras-tf]'`); prints one JSON object of median seconds:
{"(B, T, F, H)/lstm/train": s, ...}. Training is a forward and backward pass of the summed
outputs inside tf.function, as Keras' own fit() compiles it; inference is layer(x) in
tf.function.

    KERAS_BACKEND=tensorflow python benchmarks/keras_speed.py --shapes "32,7,1,64;1,1000,40,256"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


def _timings(fn, repeats: int, min_seconds: float) -> float:
    fn()
    fn()
    start = time.perf_counter()
    fn()
    calls = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-6)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def bench(shape, mode: str, recurrent_dropout: float, repeats: int, min_seconds: float) -> dict:
    B, T, F, H = shape
    cls = keras.layers.LSTM if mode == "lstm" else keras.layers.GRU
    layer = cls(H, return_sequences=True, recurrent_dropout=recurrent_dropout)
    x = tf.random.normal((B, T, F))
    layer.build((None, None, F))

    @tf.function
    def train():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, layer.trainable_variables)

    @tf.function
    def infer():
        return layer(x, training=False)

    name = mode if recurrent_dropout == 0 else f"{mode}_recurrent_dropout"
    return {f"{shape}/{name}/train": _timings(train, repeats, min_seconds),
            f"{shape}/{name}/infer": _timings(infer, repeats, min_seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", required=True, help="B,T,F,H;B,T,F,H;...")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.05)
    args = parser.parse_args()
    results = {"keras": keras.__version__, "tensorflow": tf.__version__}
    for text in args.shapes.split(";"):
        shape = tuple(int(v) for v in text.split(","))
        for mode in ("lstm", "gru"):
            results |= bench(shape, mode, 0.0, args.repeats, args.min_seconds)
        results |= bench(shape, "lstm", 0.2, args.repeats, args.min_seconds)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
