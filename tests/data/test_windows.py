"""Windows and scalers."""

from __future__ import annotations

import numpy as np

from lstmkit.data.windows import StandardScaler, make_windows


def test_windows_hold_the_past_and_the_next_steps():
    features = np.arange(20, dtype=float).reshape(10, 2)  # row t = (2t, 2t + 1)
    target = np.arange(10, dtype=float) * 10
    w = make_windows(features, target, lookback=3, horizon=2)
    assert w.inputs.shape == (6, 3, 2) and w.targets.shape == (6, 2)
    assert w.origins.tolist() == [2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(w.inputs[0], features[0:3])
    np.testing.assert_array_equal(w.targets[0], [30.0, 40.0])  # rows 3 and 4, after the origin
    np.testing.assert_array_equal(w.targets[-1], [80.0, 90.0])
    for i, origin in enumerate(w.origins):  # no window reads a row after its origin
        assert w.inputs[i, -1, 0] == features[origin, 0]


def test_open_windows_reach_the_end_with_nan_targets():
    w = make_windows(np.ones((6, 1)), np.arange(6.0), lookback=2, horizon=3, include_open=True)
    assert w.origins[-1] == 5
    assert np.isnan(w.targets[-1]).all() and np.isnan(w.targets[-2][1:]).all()


def test_scaler_round_trip_and_constant_columns():
    values = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    scaler = StandardScaler.fit(values)
    assert scaler.std[1] == 1.0  # a constant column is not divided by zero
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values)
    again = StandardScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.mean, scaler.mean)
