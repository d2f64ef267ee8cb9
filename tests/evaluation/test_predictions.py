"""The predictions JSONL: strict reading for scoring, tolerant resume after an interrupted write."""

import json

import pytest

from lare.evaluation.benchmarks.format_error import BenchmarkFormatError
from lare.evaluation.benchmarks.item import BenchmarkItem
from lare.evaluation.predictions import Prediction, PredictionWriter, align_predictions, read_predictions


def test_duplicate_id_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "prediction": "A"}\n{"id": "1", "prediction": "B"}\n')
    with pytest.raises(BenchmarkFormatError, match="line 2, field 'id': duplicate prediction for id '1'"):
        read_predictions(path)


def test_same_id_in_two_splits_is_fine(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "split": "random", "prediction": "yes"}\n'
                    '{"id": 1, "split": "popular", "prediction": "no"}\n')
    assert set(read_predictions(path)) == {("random", "1"), ("popular", "1")}


def test_partial_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "prediction": "A", "tokens": 2}\n{"id": 2, "predi')
    with pytest.raises(BenchmarkFormatError, match="line 2: invalid JSON"):
        read_predictions(path)
    assert list(read_predictions(path, tolerate_partial_last_line=True)) == [("", "1")]
    with PredictionWriter(path) as writer:  # resuming drops the cut line before appending
        writer.write([Prediction(id=2, prediction="B", tokens=1, latency_s=0.5)])
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2]


@pytest.mark.parametrize(("record", "field"), [({"prediction": "A"}, "id"), ({"id": 1}, "prediction"),
                                               ({"id": 1, "prediction": "A", "tokens": -1}, "tokens")])
def test_bad_fields(tmp_path, record, field):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(BenchmarkFormatError, match=f"line 1, field '{field}'"):
        read_predictions(path)


def test_align_missing_and_unknown(tmp_path):
    items = [BenchmarkItem(benchmark="mmstar", id=i, question="q", answer="A") for i in (1, 2)]
    only_one = {("", "1"): Prediction(id=1, prediction="A")}
    with pytest.raises(BenchmarkFormatError, match="no prediction for ids 2"):
        align_predictions(items, only_one, tmp_path / "p.jsonl")
    aligned = align_predictions(items, only_one, tmp_path / "p.jsonl", allow_missing=True)
    assert [p.prediction for p in aligned] == ["A", ""]
    with pytest.raises(BenchmarkFormatError, match="ids not in the benchmark data: 9"):
        align_predictions(items, {**only_one, ("", "9"): Prediction(id=9, prediction="A")}, "p.jsonl")
