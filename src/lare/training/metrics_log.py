"""The loss history of a run: `metrics.jsonl`, one JSON object per optimizer step, for curves and reports."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends one row per step (`step`, each loss term, `lr/<group>`, `grad_norm`, `samples_per_s`, `skipped`).

    Opening it for a resumed run drops the rows after the checkpoint's step: those steps are run again and
    logged again, so the file always describes one trajectory.
    """

    def __init__(self, output_dir: str | Path, resume_step: int = 0) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = [row for row in read_metrics(self.path) if row["step"] <= resume_step] if resume_step else []
        self.path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a `metrics.jsonl` (an empty list when the file does not exist)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize_curves(rows: list[dict[str, Any]], terms: tuple[str, ...], fraction: float = 0.2
                     ) -> dict[str, dict[str, float]]:
    """First and last value of each loss term: the means over the first and the last `fraction` of the applied
    steps (at least one step each). Averaging matters: single steps are noisy (diffusion timesteps, and in mixed
    data the batch composition: a batch without reasoning text has no text-alignment term).

    Returns `{term: {"first": …, "last": …, "change": last − first}}` for the terms present in the rows.
    """
    applied = [row for row in rows if not row.get("skipped", False)]
    summary = {}
    for term in terms:
        values = [row[term] for row in applied if term in row and math.isfinite(row[term])]
        if not values:
            continue
        width = max(1, min(int(len(values) * fraction), len(values) // 2))
        first = sum(values[:width]) / width
        last = sum(values[-width:]) / width
        summary[term] = {"first": first, "last": last, "change": last - first}
    return summary
