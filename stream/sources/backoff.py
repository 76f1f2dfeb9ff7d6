"""Exponential backoff with jitter for reconnects."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays that double from ``initial`` to ``maximum``, each jittered by +-``jitter``.

    Jitter spreads the reconnects of many cameras behind one failed switch so
    they do not hammer it in lockstep. :meth:`reset` after a healthy period,
    so a camera that drops once a day reconnects quickly each time.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"need 0 < initial <= maximum, got initial={initial}, maximum={maximum}")
        if factor < 1 or not 0 <= jitter < 1:
            raise ValueError(f"need factor >= 1 and 0 <= jitter < 1, got factor={factor}, jitter={jitter}")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def next(self) -> float:
        """The next delay in seconds (never more than ``maximum``)."""
        # Cap the exponent: after enough failures the delay is pinned at the
        # maximum anyway, and factor**attempt would overflow a float one day.
        base = min(self.maximum, self.initial * self.factor ** min(self._attempt, 64))
        self._attempt += 1
        spread = base * self.jitter
        return min(self.maximum, max(0.0, base + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        """Start again from ``initial``."""
        self._attempt = 0
