"""Phi accrual failure detector (Hayashibara et al.), with the defaults Akka uses.

Instead of a yes/no verdict the detector gives a suspicion level ``phi``: with
heartbeat inter-arrival times modelled as a normal distribution (mean and
standard deviation of the last ``max_samples`` intervals), ``phi = -log10(P)``
where ``P`` is the probability that a heartbeat arrives later than now. phi = 8
means a one-in-10^8 chance that the peer is merely slow.

``acceptable_pause`` is added to the mean, so a pause that long (a GC, a busy
event loop) costs almost nothing; ``min_std_dev`` keeps a perfectly regular
heartbeat from making the detector hair-triggered. Pure: the caller passes the
current time (seconds, any monotonic origin) to every method.
"""

from __future__ import annotations

import math
from collections import deque

from eco.plan.models import PhiDetector

# Logistic approximation of the normal CDF: 1 - F(y) ~= 1 / (1 + exp(y * (A + B*y^2))).
_A = 1.5976
_B = 0.070566
_LN10 = math.log(10.0)


def phi_of(elapsed: float, mean: float, std_dev: float) -> float:
    """Suspicion level after ``elapsed`` seconds of silence for the given interval statistics."""
    y = (elapsed - mean) / std_dev
    z = y * (_A + _B * y * y)
    # log10(1 + exp(z)), written so it neither overflows nor loses precision.
    softplus = z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))
    return softplus / _LN10


def elapsed_for_phi(threshold: float, mean: float, std_dev: float) -> float:
    """Inverse of :func:`phi_of`: the silence after which phi reaches ``threshold``."""
    # log10(1 + exp(z)) = threshold  <=>  z = ln(10^threshold - 1); then solve B*y^3 + A*y = z.
    z = math.log(math.expm1(threshold * _LN10))
    p, q = _A / _B, -z / _B  # depressed cubic y^3 + p*y + q = 0 with p > 0: one real root
    root = math.sqrt(q * q / 4 + p**3 / 27)
    y = math.cbrt(-q / 2 + root) + math.cbrt(-q / 2 - root)
    return mean + y * std_dev


class PhiAccrualDetector:
    """Failure detector for one monitored peer."""

    def __init__(self, config: PhiDetector | None = None) -> None:
        self.config = config or PhiDetector()
        self._intervals: deque[float] = deque()
        self._sum = 0.0
        self._sum_sq = 0.0
        self._last: float | None = None
        # Until real samples exist, assume heartbeats arrive on schedule give or take a quarter.
        expected, spread = self.config.heartbeat, self.config.heartbeat / 4
        self._record(expected - spread)
        self._record(expected + spread)

    @property
    def last_heartbeat(self) -> float | None:
        return self._last

    def heartbeat(self, now: float) -> None:
        """Record a heartbeat (any sign of life) from the peer at time ``now``."""
        if self._last is not None:
            interval = now - self._last
            # A gap during which the peer was already considered unavailable says nothing
            # about its normal rhythm; recording it would blind the detector for a long time.
            if interval >= 0 and self.is_available(now):
                self._record(interval)
        if self._last is None or now > self._last:
            self._last = now

    def phi(self, now: float) -> float:
        """Current suspicion level; 0 before the first heartbeat."""
        if self._last is None:
            return 0.0
        mean, std_dev = self._stats()
        return phi_of(max(0.0, now - self._last), mean, std_dev)

    def is_available(self, now: float) -> bool:
        """True while phi stays below the configured threshold."""
        return self.phi(now) < self.config.threshold

    def suspect_at(self) -> float | None:
        """Time at which phi reaches the threshold if no heartbeat arrives (for a driver's timer)."""
        if self._last is None:
            return None
        mean, std_dev = self._stats()
        return self._last + elapsed_for_phi(self.config.threshold, mean, std_dev)

    def _stats(self) -> tuple[float, float]:
        n = len(self._intervals)
        mean = self._sum / n
        variance = max(0.0, self._sum_sq / n - mean * mean)
        std_dev = max(math.sqrt(variance), self.config.min_std_dev)
        return mean + self.config.acceptable_pause, std_dev

    def _record(self, interval: float) -> None:
        self._intervals.append(interval)
        self._sum += interval
        self._sum_sq += interval * interval
        if len(self._intervals) > self.config.max_samples:
            old = self._intervals.popleft()
            self._sum -= old
            self._sum_sq -= old * old


class PhiRegistry:
    """One :class:`PhiAccrualDetector` per peer, created on the first heartbeat."""

    def __init__(self, config: PhiDetector | None = None) -> None:
        self.config = config or PhiDetector()
        self._detectors: dict[str, PhiAccrualDetector] = {}

    def heartbeat(self, peer: str, now: float) -> None:
        detector = self._detectors.get(peer)
        if detector is None:
            detector = self._detectors[peer] = PhiAccrualDetector(self.config)
        detector.heartbeat(now)

    def phi(self, peer: str, now: float) -> float:
        detector = self._detectors.get(peer)
        return 0.0 if detector is None else detector.phi(now)

    def is_available(self, peer: str, now: float) -> bool:
        return self.phi(peer, now) < self.config.threshold

    def unavailable(self, now: float) -> list[str]:
        """Peers whose phi has crossed the threshold, sorted."""
        return sorted(p for p, d in self._detectors.items() if not d.is_available(now))

    def remove(self, peer: str) -> None:
        self._detectors.pop(peer, None)
