"""metrics.jsonl: a resumed run drops the rows it will redo; curve summaries average the ends of the run."""

from __future__ import annotations

import pytest

from lare.training.metrics_log import MetricsLog, read_metrics, summarize_curves


def test_resume_truncates_rows_after_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(1, 6):
        log.append({"step": step, "loss": float(step)})
    MetricsLog(tmp_path, resume_step=3).append({"step": 4, "loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    MetricsLog(tmp_path)  # a fresh run starts a fresh file
    assert read_metrics(tmp_path) == []


def test_summary_means_over_first_and_last_fifth_skipping_skipped_steps():
    rows = [{"step": i, "ntp": float(i), "skipped": False} for i in range(1, 11)]
    rows.append({"step": 11, "ntp": float("nan"), "skipped": True})
    summary = summarize_curves(rows, ("ntp", "align"))
    assert summary == {"ntp": {"first": pytest.approx(1.5), "last": pytest.approx(9.5), "change": pytest.approx(8.0)}}
