"""The non-finite guard: skip a step whose loss (or gradient) is NaN/inf, and stop after too many in a row."""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a non-finite loss; the message names the step and the loss terms."""


class NonFiniteGuard:
    """Counts skipped steps; raises `NonFiniteLossError` after `max_consecutive` skips in a row.

    Args:
        max_consecutive: consecutive skips tolerated; the next one raises.
        total: skips so far (restored from a checkpoint).
        consecutive: current run of skips (restored from a checkpoint).
    """

    def __init__(self, max_consecutive: int, total: int = 0, consecutive: int = 0) -> None:
        self.max_consecutive = max_consecutive
        self.total = total
        self.consecutive = consecutive

    @staticmethod
    def finite(values: dict[str, float]) -> bool:
        return all(math.isfinite(value) for value in values.values())

    def ok(self) -> None:
        """A step was applied."""
        self.consecutive = 0

    def skip(self, step: int, terms: dict[str, float], reason: str) -> None:
        """A step was skipped (gradients zeroed, no optimizer/scheduler step). Raises after too many in a row."""
        self.total += 1
        self.consecutive += 1
        described = ", ".join(f"{name}={value:.4g}" for name, value in terms.items())
        logger.warning("step %d: non-finite %s (%s); step skipped (%d in a row, %d in total)", step, reason,
                       described, self.consecutive, self.total)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive steps had a non-finite {reason}, the last at step {step} "
                f"({described}); stopping. Lower the learning rate, enable gradient clipping or check the data.")
