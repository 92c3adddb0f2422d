"""Accuracy statistics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from latency_lut.metrics import accuracy, kendall_tau, relative_errors, rmspe, robust_cv, share_within, spread


def test_relative_errors_sign_and_value():
    assert relative_errors([110.0, 90.0, 100.0], [100.0, 100.0, 100.0]) == pytest.approx([0.1, -0.1, 0.0])


def test_relative_errors_reject_bad_measurements():
    with pytest.raises(ValueError):
        relative_errors([1.0], [0.0])
    with pytest.raises(ValueError):
        relative_errors([1.0, 2.0], [1.0])


def test_share_within_is_inclusive_at_the_edge():
    errs = [0.1, -0.1, 0.0, 0.2]
    assert share_within(errs, 0.10) == 0.75
    assert share_within(errs, 0.05) == 0.25


def test_rmspe_by_hand():
    # sqrt((0.01 + 0.01 + 0 + 0.04) / 4) = sqrt(0.015)
    assert rmspe([0.1, -0.1, 0.0, 0.2]) == pytest.approx(math.sqrt(0.015))


def test_kendall_tau_one_swap():
    # 6 pairs, one discordant: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_kendall_tau_b_with_ties():
    # pairs: 4 concordant, 1 tied in x only, 1 tied in y only -> 4 / sqrt(5 * 5)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)


def test_kendall_tau_extremes():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_accuracy_summary_by_hand():
    a = accuracy([110.0, 90.0, 100.0, 120.0], [100.0, 100.0, 100.0, 100.0])
    assert a.n == 4
    assert a.within_10 == 0.75 and a.within_5 == 0.25
    assert a.mean_error == pytest.approx(0.05)  # (0.1 - 0.1 + 0 + 0.2) / 4
    assert a.max_abs_error == pytest.approx(0.2)
    assert a.rmspe == pytest.approx(math.sqrt(0.015))
    # predictions 110, 90, 100, 120 against a constant measurement: every pair is tied in y -> no ranking
    assert math.isnan(a.kendall_tau)
    assert set(a.to_dict()) >= {"within_5", "within_10", "rmspe", "mean_error", "kendall_tau"}


def test_noise_measures():
    assert spread([9.0, 10.0, 11.0]) == pytest.approx(0.2)
    assert math.isnan(spread([10.0]))
    # MAD of [9, 10, 10, 10, 30] around 10 is 0 -> one preempted round does not register as noise
    assert robust_cv([9.0, 10.0, 10.0, 10.0, 30.0]) == 0.0
    assert robust_cv([9.0, 10.0, 11.0]) == pytest.approx(1.4826 * 1.0 / 10.0)
