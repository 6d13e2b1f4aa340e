"""Forecast quality on the bundled Seattle weather: the model against its baselines.

Measures what the forecasting issue's quality bar asks, on the default split (train
2012-2014, test 2015) and the default config unless flags say otherwise:

- single models (ensemble_size=1) over several seeds: mean, spread, and each seed against the
  linear baseline;
- the default ensemble;
- --horizon 3 (the 3rd day ahead against persistence and the linear baseline);
- a rolling-origin backtest over the yearly cut-offs 2013, 2014, 2015.

    python benchmarks/forecast_quality.py              # all parts (about 10 minutes)
    python benchmarks/forecast_quality.py --parts seeds,backtest

Writes JSON to benchmarks/results/forecast_quality-<time>.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from lstmkit.cli.forecast import DEMO_COLUMNS, DEMO_TEST_START
from lstmkit.data.datasets import seattle_weather
from lstmkit.tasks.forecast import Forecaster

COLUMNS = dict(DEMO_COLUMNS)


def single_seeds(table, seeds: list[int]) -> dict:
    rows = []
    for seed in seeds:
        model = Forecaster(ensemble_size=1, seed=seed).fit(table, **COLUMNS,
                                                          test_start=DEMO_TEST_START)
        test = model.evaluate(table, test_start=DEMO_TEST_START)["test"]
        rows.append({"seed": seed, "mae": test["model"]["mae"], "linear": test["linear"]["mae"],
                     "persistence": test["persistence"]["mae"]})
        print(f"seed {seed}: MAE {rows[-1]['mae']:.3f} (linear {rows[-1]['linear']:.3f}, "
              f"persistence {rows[-1]['persistence']:.3f})", flush=True)
    maes = [r["mae"] for r in rows]
    return {"seeds": rows, "mean": statistics.mean(maes), "stdev": statistics.stdev(maes)
            if len(maes) > 1 else 0.0, "all_beat_linear": all(r["mae"] < r["linear"]
                                                                for r in rows)}


def default_run(table, **overrides) -> dict:
    model = Forecaster(**overrides).fit(table, **COLUMNS, test_start=DEMO_TEST_START)
    metrics = model.evaluate(table, test_start=DEMO_TEST_START)
    print(json.dumps({k: {m: round(v["mae"], 3) for m, v in metrics["test"].items()}
                      for k in ["test"]}), flush=True)
    if "test_mae_by_step" in metrics:
        print("MAE by step:", {m: [round(v, 3) for v in s]
                               for m, s in metrics["test_mae_by_step"].items()}, flush=True)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="seeds,ensemble,horizon3,backtest")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    table = seattle_weather()
    parts = args.parts.split(",")
    result = {}
    start = time.perf_counter()
    if "seeds" in parts:
        result["single_seeds"] = single_seeds(table, [int(s) for s in args.seeds.split(",")])
    if "ensemble" in parts:
        result["ensemble"] = default_run(table)
    if "horizon3" in parts:
        result["horizon3"] = default_run(table, horizon=3)
    if "backtest" in parts:
        result["backtest"] = Forecaster().backtest(
            table, ["2013-01-01", "2014-01-01", "2015-01-01"], **COLUMNS)
        for fold in result["backtest"]["folds"]:
            print(f"backtest {fold['cutoff']}: " + ", ".join(
                f"{m} {v['mae']:.3f}" for m, v in fold["test"].items()), flush=True)
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"forecast_quality-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
