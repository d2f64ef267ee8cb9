"""Accuracy and refocus precision per question type: the level that splits a family, and the report's table."""

from __future__ import annotations

import json
from types import SimpleNamespace

from lare.demo.report import precision_by_type, question_types, type_table
from lare.demo.run import MethodScore, accuracy_by_type


def test_accuracy_by_type_takes_the_first_category_level_that_splits_the_family():
    mmbench = {"by_category": {"category": {"a": 0.0, "b": 0.0}},  # circular: not the demo's headline
               "by_category_vanilla": {"category": {"relation": 0.25, "colour": 0.5}, "l2_category": {"x": 0.4}}}
    assert accuracy_by_type("mmbench", mmbench) == {"colour": 0.5, "relation": 0.25}
    mmstar = {"by_category": {"category": {"instance": 0.4}, "l2_category": {"hop_shape": 0.6, "hop_colour": 0.2}}}
    assert accuracy_by_type("mmstar", mmstar) == {"hop_colour": 0.2, "hop_shape": 0.6}
    assert accuracy_by_type("pope", {"random": {"accuracy": 0.5}}) == {}
    assert accuracy_by_type("mmstar", {"by_category": {"category": {"one": 1.0}, "l2_category": {"one": 1.0}}}) == {}


def test_question_types_and_precision_by_type(tmp_path):
    records = [
        {"id": "b1", "family": "mmbench", "category": "colour", "l2_category": "attr"},
        {"id": "b2", "family": "mmbench", "category": "shape", "l2_category": "attr"},
        {"id": "s1", "family": "mmstar", "category": "inst", "l2_category": "hop_shape"},
        {"id": "s2", "family": "mmstar", "category": "inst", "l2_category": "hop_colour"},
        {"id": "p1", "family": "pope", "category": "random", "l2_category": "random"},
    ]
    path = tmp_path / "test.json"
    path.write_text(json.dumps(records))
    types = question_types(path)
    assert types == {"b1": ("mmbench", "colour"), "b2": ("mmbench", "shape"), "s1": ("mmstar", "hop_shape"),
                     "s2": ("mmstar", "hop_colour")}
    per_sample = [{"id": "b1", "hits": [True, False, False, False]}, {"id": "b2", "hits": [True, True]},
                  {"id": "s1", "hits": []}, {"id": "p1", "hits": [True]}]
    assert precision_by_type(per_sample, types) == {
        "mmbench": {"colour": {"precision": 0.25, "n_steps": 4}, "shape": {"precision": 1.0, "n_steps": 2}}}


def test_type_table_compares_methods_per_type_with_the_window_precision():
    def score(by_type):
        families = {f: {"accuracy": 0.5, "by_type": by_type.get(f, {})}
                    for f in ("mmbench", "mmstar", "mmvp", "pope", "scienceqa")}
        return MethodScore(accuracy=0.5, tokens_correct=10.0, n=10, by_family=families)

    result = SimpleNamespace(
        methods={"direct": score({"mmbench": {"colour_at": 0.25}}), "cot": score({"mmbench": {"colour_at": 0.75}}),
                 "lare": score({"mmbench": {"colour_at": 0.5}})},
        extras={"refocus_precision": {"per_type": {"mmbench": {"colour_at": {"precision": 0.4, "n_steps": 8}}}}})
    table = type_table(result)
    row = next(line for line in table.splitlines() if "colour at" in line)
    assert [cell.strip() for cell in row.strip("|").split("|")] == ["mmbench", "colour at", "25.0", "75.0", "50.0",
                                                                   "-25.0", "40.0"]
    empty = SimpleNamespace(methods={m: score({}) for m in ("direct", "cot", "lare")}, extras={})
    assert type_table(empty) == ""
