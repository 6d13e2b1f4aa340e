"""``lstmkit forecast train|evaluate|predict|backtest|demo``: thin, calls Forecaster only."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from ..config import json_safe, write_json
from ..data.datasets import seattle_weather
from ..data.series import FILL_POLICIES
from ..data.tables import read_table
from ..tasks.forecast import ForecastConfig, Forecaster
from ._flags import add_config_flags, config_from_args, split_list
from ._runs import add_run_dir_verb, add_run_flags, out_dir, write_run

DEMO_COLUMNS = dict(time="date", target="temp_max",
                    covariates=("temp_min", "precipitation", "wind", "weather"))
DEMO_TEST_START = "2015-01-01"


def _columns(args) -> dict:
    return dict(time=args.time, target=args.target, covariates=split_list(args.covariates),
                series_id=args.series_id, static=split_list(args.static), fill_na=args.fill_na)


def _print_metrics(metrics: dict, part: str = "test") -> None:
    print(f"{'method':<16}{'MAE':>9}{'RMSE':>9}{'MAPE%':>9}{'sMAPE%':>9}{'MASE':>8}{'n':>6}")
    for method, m in metrics[part].items():
        cells = [m.get(k) for k in ("mae", "rmse", "mape", "smape", "mase")]
        cells = [None if v is None or v != v else v for v in cells]
        text = "".join(f"{v:>9.3f}" if v is not None and v == v else f"{'-':>9}"
                       for v in cells[:4])
        mase = cells[4]
        text += f"{mase:>8.3f}" if mase is not None and mase == mase else f"{'-':>8}"
        print(f"{method:<16}{text}{m.get('count', ''):>6}")


def _train(args, data, columns: dict, test_start, out: Path,
           prepare=None) -> Forecaster:
    """Train into the run folder ``out``, written whole or not at all."""
    def build(folder: Path) -> Forecaster:
        table = prepare(folder) if prepare is not None else data
        return _fit_and_report(args, table, columns, test_start, folder)

    return write_run(out, build)


def _fit_and_report(args, data, columns: dict, test_start, folder: Path) -> Forecaster:
    config = config_from_args(ForecastConfig, args)
    forecaster = Forecaster(config)
    start = time.perf_counter()
    forecaster.fit(data, **columns, test_start=test_start, quiet=args.quiet)
    forecaster.save(folder)
    metrics = forecaster.report(folder, data, test_start=test_start)
    seconds = time.perf_counter() - start
    c = forecaster.config
    print(f"{columns['target']}: {c.horizon} step(s) ahead from {c.lookback} steps of history, "
          f"{c.ensemble_size} x {c.cell.upper()}({c.hidden_size}); test part from "
          f"{pd.Timestamp(test_start).date()}; trained in {seconds:.0f} s")
    if forecaster.interrupted:
        print("training was interrupted: the models trained so far were kept and saved")
    _print_metrics(metrics)
    if c.horizon > 1:
        print("\nMAE by step ahead: " + "; ".join(
            f"{m} " + " ".join(f"{v:.3f}" for v in steps)
            for m, steps in metrics["test_mae_by_step"].items()))
    forecast = forecaster.predict(data)
    print("\nforecast after the data's last time:")
    print(forecast.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return forecaster


def run_train(args) -> int:
    columns = _columns(args)
    out = out_dir(args, "forecast")
    table, _ = read_table(args.data)  # read once; the table keeps the file's name for messages
    test_start = args.test_start or Forecaster.default_test_start(table, args.time)
    _train(args, table, columns, test_start, out)
    return 0


def run_demo(args) -> int:
    out = out_dir(args, "forecast-demo")
    print("Seattle daily weather 2012-2015 (vega_datasets): next-day temp_max from the past "
          "7 days of temp_max, temp_min, precipitation, wind and weather; test year 2015.\n")

    def write_data(folder: Path) -> pd.DataFrame:
        path = folder / "seattle-weather.csv"
        seattle_weather().to_csv(path, index=False)
        return read_table(path)[0]

    _train(args, None, dict(DEMO_COLUMNS, series_id=None, static=(), fill_na=None),
           DEMO_TEST_START, out, prepare=write_data)
    print(f"try: lstmkit forecast evaluate {out} --data {out / 'seattle-weather.csv'} "
          f"--test-start {DEMO_TEST_START}")
    return 0


def run_evaluate(args) -> int:
    forecaster = Forecaster.load(args.run_dir)
    metrics = forecaster.evaluate(args.data, test_start=args.test_start, test_end=args.test_end)
    if args.json:
        print(json.dumps(json_safe(metrics), indent=2, allow_nan=False))
    else:
        _print_metrics(metrics)
    return 0


def run_predict(args) -> int:
    forecast = Forecaster.load(args.run_dir).predict(args.data)
    forecast.to_csv(sys.stdout, index=False)
    return 0


def run_backtest(args) -> int:
    config = config_from_args(ForecastConfig, args)
    result = json_safe(Forecaster(config).backtest(read_table(args.data)[0],
                                                   list(split_list(args.cutoffs)),
                                                   **_columns(args), quiet=args.quiet))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "backtest.json", result)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return 0
    for fold in result["folds"]:
        print(f"\ncut-off {fold['cutoff']} -> {fold['test_end'] or 'end'}")
        _print_metrics(fold)
    print("\nmean over folds")
    _print_metrics({"test": result["mean"]})
    return 0


def _data_flags(parser, required: bool = True) -> None:
    parser.add_argument("--data", required=required, help="CSV or Parquet file")
    parser.add_argument("--time", required=required, help="time column")
    parser.add_argument("--target", required=required, help="column to forecast")
    parser.add_argument("--covariates", help="past covariates, comma-separated (numeric or "
                                             "labels, e.g. temp_min,weather)")
    parser.add_argument("--series-id", help="series id column (long format, one global model)")
    parser.add_argument("--static", help="static numeric features per series, comma-separated")
    parser.add_argument("--fill-na", choices=FILL_POLICIES, help="fill gaps and NaN/inf this "
                                                                 "way instead of stopping")


def add_parser(commands) -> None:
    forecast = commands.add_parser("forecast", help="time-series forecasting",
                                   description=__doc__)
    verbs = forecast.add_subparsers(dest="verb", required=True)
    train = verbs.add_parser("train", help="train, evaluate on the test part, save a run")
    _data_flags(train)
    train.add_argument("--test-start", help="first time of the test part (default: the last "
                                            "20%% of the time span)")
    add_run_flags(train)
    add_config_flags(train, ForecastConfig)
    train.set_defaults(run=run_train)

    demo = verbs.add_parser("demo", help="train on the bundled Seattle weather (2015 as test)")
    add_run_flags(demo)
    add_config_flags(demo, ForecastConfig)
    demo.set_defaults(run=run_demo)

    evaluate = add_run_dir_verb(verbs, "evaluate", "model and baselines on a test part",
                                "CSV or Parquet file", run_evaluate, json=True)
    evaluate.add_argument("--test-start", help="first time of the test part (default: the "
                                               "last 20%% of the time span)")
    evaluate.add_argument("--test-end", help="end (exclusive) of the test part")

    add_run_dir_verb(verbs, "predict", "forecast after the data's last time, as CSV",
                     "CSV or Parquet file", run_predict)

    backtest = verbs.add_parser("backtest", help="rolling-origin evaluation over cut-offs")
    _data_flags(backtest)
    backtest.add_argument("--cutoffs", required=True, help="cut-off dates, comma-separated, "
                                                           "e.g. 2013-01-01,2014-01-01")
    backtest.add_argument("--json", action="store_true", help="print the result as JSON")
    backtest.add_argument("--out", type=Path, help="also write backtest.json here")
    backtest.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(backtest, ForecastConfig)
    backtest.set_defaults(run=run_backtest)
