"""Phi accrual failure detector: growth with silence, threshold crossing time, acceptable pause."""

import math

import pytest

from eco.plan.models import PhiDetector
from eco.runtime.phi import PhiAccrualDetector, PhiRegistry, elapsed_for_phi, phi_of


def _regular(config=None, *, beats=100, interval=1.0):
    detector = PhiAccrualDetector(config)
    for i in range(beats):
        detector.heartbeat(i * interval)
    return detector, (beats - 1) * interval


def _reference_phi(elapsed, mean, std):
    """Hayashibara's phi with the logistic approximation of the normal CDF, written out plainly."""
    y = (elapsed - mean) / std
    e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    return -math.log10(e / (1 + e)) if elapsed > mean else -math.log10(1 - 1 / (1 + e))


def test_defaults_are_akkas():
    config = PhiAccrualDetector().config
    assert (config.threshold, config.heartbeat, config.acceptable_pause, config.min_std_dev, config.max_samples) == (
        8.0, 1.0, 3.0, 0.1, 1000,
    )


def test_no_heartbeat_yet_means_no_suspicion():
    detector = PhiAccrualDetector()
    assert detector.phi(100.0) == 0.0 and detector.is_available(100.0) and detector.suspect_at() is None


def test_phi_grows_with_silence():
    detector, last = _regular()
    values = [detector.phi(last + s) for s in (0.5, 2.0, 3.5, 4.0, 4.3, 4.6, 5.0)]
    assert values == sorted(values) and values[0] < 0.5 and values[-1] > 8
    assert detector.phi(last + 60) == pytest.approx(detector.phi(last + 60))  # no overflow far out
    assert math.isfinite(detector.phi(last + 10_000))


@pytest.mark.parametrize("elapsed", [3.0, 3.5, 3.9, 4.1, 4.5, 5.0])
def test_phi_matches_the_reference_formula(elapsed):
    assert phi_of(elapsed, 4.0, 0.1) == pytest.approx(_reference_phi(elapsed, 4.0, 0.1), rel=1e-9, abs=1e-12)


def test_threshold_crossing_time_matches_formula():
    detector, last = _regular()
    # Regular 1 s beats: mean 1 s (+3 s acceptable pause), std-dev clamped to 100 ms.
    lo, hi = 4.0, 6.0  # bisection on the reference formula for phi = 8
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _reference_phi(mid, 4.0, 0.1) < 8 else (lo, mid)
    # The two seeded samples (0.75 s, 1.25 s) widen the std-dev a little: within 20 ms.
    assert detector.suspect_at() - last == pytest.approx(lo, abs=0.02)
    crossing = detector.suspect_at()
    assert detector.is_available(crossing - 0.01) and not detector.is_available(crossing + 0.01)
    assert elapsed_for_phi(8.0, 4.0, 0.1) == pytest.approx(lo, abs=1e-6)


def test_acceptable_pause_is_honoured():
    strict = PhiDetector(acceptable_pause=0.0)
    relaxed_detector, last = _regular()
    strict_detector, _ = _regular(strict)
    # A 3 s pause after steady 1 s heartbeats: fine with the default pause, fatal without it.
    assert relaxed_detector.is_available(last + 3.9)
    assert not strict_detector.is_available(last + 3.9)
    assert not relaxed_detector.is_available(last + 5.0)


def test_jittery_heartbeats_widen_the_distribution():
    steady, last = _regular()
    jittery = PhiAccrualDetector()
    t = 0.0
    for i in range(100):
        t += 0.5 if i % 2 else 1.5
        jittery.heartbeat(t)
    assert jittery.phi(t + 4.5) < steady.phi(last + 4.5)


def test_sample_window_is_bounded():
    detector, last = _regular(PhiDetector(max_samples=10), beats=50, interval=0.2)
    # Only the last 10 intervals (all 0.2 s) count; the 1 s seed samples are gone.
    assert detector.suspect_at() - last == pytest.approx(elapsed_for_phi(8.0, 3.2, 0.1))


def test_registry_tracks_peers_independently():
    registry = PhiRegistry()
    for i in range(20):
        registry.heartbeat("a", float(i))
        if i < 5:
            registry.heartbeat("b", float(i))
    assert registry.unavailable(19.5) == ["b"]
    assert registry.is_available("a", 19.5) and registry.phi("unknown", 19.5) == 0.0
