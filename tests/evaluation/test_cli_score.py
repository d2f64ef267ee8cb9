"""`lare eval score` end to end: prints the metrics JSON and writes it to a file."""

import json

from lare.cli import main
from tests.evaluation.files import write_predictions, write_table


def test_eval_score_prints_and_writes(tmp_path, capsys, red_png_b64):
    data = write_table(tmp_path / "MMStar.tsv", ["index", "question", "answer", "category", "l2_category", "image"],
                       [[0, "q", "A", "math", "geometry", red_png_b64], [1, "q", "B", "math", "geometry", ""]])
    preds = write_predictions(tmp_path / "preds.jsonl", [{"id": 0, "prediction": "A", "tokens": 4},
                                                         {"id": 1, "prediction": "C", "tokens": 9}])
    assert main(["eval", "score", "--benchmark", "mmstar", "--data", str(data), "--predictions", str(preds)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"] == 0.5
    assert printed["tokens_correct"] == 4.0
    assert printed["lmms_eval_tokens_per_correct_answer"] == 13.0
    assert json.loads((tmp_path / "preds.metrics.json").read_text()) == printed


def test_eval_score_pope_takes_several_files(tmp_path, capsys):
    paths = []
    for split in ("random", "adversarial"):
        path = tmp_path / f"coco_pope_{split}.json"
        path.write_text(json.dumps({"question_id": 1, "image": "a.jpg", "text": "q?", "label": "yes"}) + "\n")
        paths += ["--data", str(path)]
    preds = write_predictions(tmp_path / "preds.jsonl", [{"id": 1, "split": "random", "prediction": "Yes"},
                                                         {"id": 1, "split": "adversarial", "prediction": "No"}])
    out = tmp_path / "m.json"
    assert main(["eval", "score", "--benchmark", "pope", *paths, "--predictions", str(preds), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["random"]["accuracy"] == 1.0 and metrics["adversarial"]["accuracy"] == 0.0
    assert metrics["mean"]["accuracy"] == 0.5
    assert metrics["tokens_correct"] is None
