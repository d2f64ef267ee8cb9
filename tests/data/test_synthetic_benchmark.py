"""lare.data.synthetic: determinism, answers re-derived from scene metadata, evidence, balance, exports."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lare.data.images import decode_base64_image, open_image
from lare.data.records import load_records
from lare.data.synthetic import (
    BACKGROUND,
    COLOURS,
    POPE_SPLITS,
    SHAPE_PLURALS,
    SHAPE_WEIGHTS,
    SHAPES,
    WORD_PATTERN,
    generate_synthetic,
    synthetic_vocabulary,
    vocabulary_corpus,
)

LETTERS = "ABCD"
FAMILIES = {"mmbench", "mmstar", "mmvp", "pope", "scienceqa"}
STEPS = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}
PLURAL_TO_SHAPE = {plural: shape for shape, plural in SHAPE_PLURALS.items()}


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _split_list(text: str) -> list[str]:
    """'red, green and blue' -> ['red', 'green', 'blue']."""
    return re.split(r", | and ", text)


def _derive(record: dict) -> str:
    """Answer a record from its question text and scene metadata alone (independently of the generator)."""
    objects = record["scene"]["objects"]
    by_colour = {}
    for obj in objects:
        assert obj["colour"] not in by_colour, "colours are unique within a scene"
        by_colour[obj["colour"]] = obj
    at = {(obj["row"], obj["col"]): obj for obj in objects}
    lines = record["conversations"][0]["value"].split("\n")
    assert lines[0] == "<image>"
    hint = lines[1].removeprefix("Context: ") if lines[1].startswith("Context: ") else None
    question = lines[2] if hint is not None else lines[1]
    options = [line[3:] for line in lines[(3 if hint is not None else 2):]]
    assert options == (record["options"] or [])
    assert [line[:3] for line in lines[(3 if hint is not None else 2):]] == [f"{l}. " for l in LETTERS[: len(options)]]

    if m := re.fullmatch(r"What shape is the (\w+) object\?", question):
        value = by_colour[m[1]]["shape"]
    elif m := re.fullmatch(r"What colour is the object in row (\d), column (\d)\?", question):
        value = at[(int(m[1]), int(m[2]))]["colour"]
    elif m := re.fullmatch(r"Where is the (\w+) object relative to the (\w+) object\?", question):
        a, b = by_colour[m[1]], by_colour[m[2]]
        if a["row"] == b["row"]:
            value = "left" if a["col"] < b["col"] else "right"
        else:
            assert a["col"] == b["col"]
            value = "above" if a["row"] < b["row"] else "below"
    elif m := re.fullmatch(r"What is the (shape|colour) of the object directly (left of|right of|above|below) "
                           r"the (\w+) (\w+)\?", question):
        reference = by_colour[m[3]]
        assert reference["shape"] == m[4]
        dr, dc = STEPS[m[2]]
        value = at[(reference["row"] + dr, reference["col"] + dc)][m[1]]
    elif m := re.fullmatch(r"Is the (\w+) (\w+) small or large\?", question):
        assert by_colour[m[1]]["shape"] == m[2]
        value = by_colour[m[1]]["size"]
    elif m := re.fullmatch(r"Is there a (\w+) (\w+) in the image\?", question):
        value = "yes" if any(o["colour"] == m[1] and o["shape"] == m[2] for o in objects) else "no"
    elif m := re.fullmatch(r"What is the object in row (\d), column (\d) made of\?", question):
        metal = _split_list(re.fullmatch(r"In this picture, (.+) objects are made of metal\. Objects of other "
                                         r"colours are made of wood\.", hint)[1])
        value = "metal" if at[(int(m[1]), int(m[2]))]["colour"] in metal else "wood"
    elif m := re.fullmatch(r"Is the (\w+) object hot or cold\?", question):
        hot = [PLURAL_TO_SHAPE[p] for p in _split_list(
            re.fullmatch(r"In this picture, (.+) are hot\. The other shapes are cold\.", hint)[1])]
        value = "hot" if by_colour[m[1]]["shape"] in hot else "cold"
    else:
        raise AssertionError(f"unknown question template: {question!r}")
    return LETTERS[options.index(value)] if options else value


def test_same_seed_gives_identical_bytes(tmp_path, synthetic):
    again = generate_synthetic(tmp_path / "again", n_train=40, n_test=40, seed=3)
    first, second = _files(synthetic.out_dir), _files(again.out_dir)
    assert first.keys() == second.keys()
    assert len(first) == 151  # 80 images, 5 JSON files, 33 test + 33 train export files
    assert [name for name in first if first[name] != second[name]] == []

    other = generate_synthetic(tmp_path / "other", n_train=40, n_test=40, seed=4)
    assert (other.out_dir / "train.json").read_bytes() != (synthetic.out_dir / "train.json").read_bytes()


def test_test_split_does_not_depend_on_training_size_and_shares_no_scene(tmp_path, synthetic):
    smaller = generate_synthetic(tmp_path / "small", n_train=10, n_test=40, seed=3)
    assert (smaller.out_dir / "test.json").read_bytes() == (synthetic.out_dir / "test.json").read_bytes()

    def scenes(path):
        return {json.dumps(r["scene"]["objects"]) for r in _load(path)}

    assert not scenes(synthetic.train_path) & scenes(synthetic.test_path)


def test_every_answer_rederived_from_scene_metadata(synthetic):
    for path in (synthetic.train_path, synthetic.test_path):
        for record in _load(path):
            assert _derive(record) == record["answer"], record["id"]
            assert record["conversations"][1]["value"].endswith(f"The answer is {record['answer']}.")


def test_every_record_validates_and_families_are_balanced(synthetic):
    for path in (synthetic.train_path, synthetic.test_path, synthetic.captions_path, synthetic.instructions_path):
        records, summary = load_records(path, synthetic.image_root, on_bad="raise")
        assert summary.n_rejected == 0 and len(records) == 40
    test = _load(synthetic.test_path)
    assert Counter(r["family"] for r in test) == {family: 8 for family in FAMILIES}
    assert Counter(r["query"]["split"] for r in test if r["family"] == "pope") == {"random": 3, "popular": 3,
                                                                                 "adversarial": 2}
    for family in FAMILIES:
        answers = Counter(r["answer"] for r in test if r["family"] == family)
        assert len(set(answers.values())) == 1, (family, answers)  # every letter / yes-no equally often
        stats = synthetic.families[family]
        assert stats.majority == pytest.approx(stats.chance)  # balanced: a constant answer is no better than chance
    assert synthetic.families["mmbench"].chance == pytest.approx(0.25)
    assert synthetic.families["pope"].chance == pytest.approx(0.5)
    assert synthetic.families["mmvp"].pair_chance == pytest.approx(0.25)


def test_images_match_scene_metadata_and_boxes_are_tight(synthetic):
    for record in _load(synthetic.train_path) + _load(synthetic.test_path):
        pixels = np.asarray(open_image(record["image"], image_root=synthetic.image_root)).astype(int)  # [H, W, 3]
        assert pixels.shape == (64, 64, 3)
        covered = np.zeros((64, 64), dtype=bool)
        for obj in record["scene"]["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert (x0 // 16, y0 // 16, (x1 - 1) // 16, (y1 - 1) // 16) == (obj["col"] - 1, obj["row"] - 1,
                                                                             obj["col"] - 1, obj["row"] - 1)
            assert (x1 - x0) * (y1 - y0) <= 64 * 64 / 16
            ys, xs = np.nonzero(np.all(pixels[y0:y1, x0:x1] == COLOURS[obj["colour"]], axis=-1))
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (0, 0, x1 - x0 - 1, y1 - y0 - 1), record["id"]
            covered[y0:y1, x0:x1] = True
        assert np.all(pixels[~covered] == BACKGROUND)
        boxes = [obj["box"] for obj in record["scene"]["objects"]]
        assert all(box in boxes for box in record["boxes"])
        assert record["boxes"] or record["family"] == "pope"  # only "no such colour here" has no evidence box


def test_evidence_is_local_for_at_least_half_the_questions(synthetic):
    records = _load(synthetic.train_path) + _load(synthetic.test_path)

    def local(record):
        boxes = record["boxes"]
        if not boxes:
            return False
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        return (x1 - x0) * (y1 - y0) <= 64 * 64 / 16

    fraction = sum(map(local, records)) / len(records)
    assert fraction >= 0.5
    assert fraction == pytest.approx(synthetic.small_evidence_fraction)
    stats = json.loads(synthetic.stats_path.read_text())
    assert stats["small_evidence_fraction"] == pytest.approx(fraction)


def test_rationales_are_multi_step_and_longer_than_answers(synthetic):
    for record in _load(synthetic.test_path):
        sentences = [s.strip() for s in re.findall(r"[^.]+\.", record["rationale"])]
        assert 3 <= len(sentences) <= 5, record["rationale"]
        assert len(record["rationale"].split()) > 3 * len(f"The answer is {record['answer']}.".split())


def test_rationale_ends_with_the_right_option_text_and_no_other(synthetic):
    checked = 0
    for record in _load(synthetic.test_path):
        if not record.get("options"):
            continue
        last = re.findall(r"[^.]+\.", record["rationale"])[-1]
        named = [text for text in record["options"] if re.search(rf"\b{text}\b", last)]
        assert named == [record["options"]["ABCD".index(record["answer"])]], record["rationale"]
        checked += 1
    assert checked > 0


def test_scienceqa_rationale_looks_before_it_applies_the_context(synthetic):
    for record in _load(synthetic.test_path):
        if record["family"] == "scienceqa":
            sentences = re.findall(r"[^.]+\.", record["rationale"])
            assert sentences[0].startswith(("Look at", "Find the")), record["rationale"]
            assert sentences[-2].strip().startswith("The context says"), record["rationale"]


def test_mmvp_pairs_differ_in_one_detail_with_different_answers(synthetic):
    mmvp = [r for r in _load(synthetic.test_path) if r["family"] == "mmvp"]
    assert len(mmvp) == 8
    for first, second in zip(mmvp[::2], mmvp[1::2]):
        assert first["conversations"][0]["value"] == second["conversations"][0]["value"]
        assert first["answer"] != second["answer"]
        a, b = first["scene"]["objects"], second["scene"]["objects"]
        assert [(o["row"], o["col"]) for o in a] == [(o["row"], o["col"]) for o in b]
        differences = [(key, x[key], y[key]) for x, y in zip(a, b) for key in ("shape", "colour", "size")
                       if x[key] != y[key]]
        assert len(differences) == 1 and differences[0][0] == first["category"]


def test_pope_negatives_follow_their_sampling_rule(synthetic):
    pope = [r for r in _load(synthetic.test_path) + _load(synthetic.train_path) if r["family"] == "pope"]
    for record in pope:
        if record["answer"] == "yes":
            continue
        objects = record["scene"]["objects"]
        colour, shape = record["query"]["colour"], record["query"]["shape"]
        if record["query"]["split"] == "adversarial":
            # The same colour is present as another shape: only looking closely rules it out.
            assert any(o["colour"] == colour and o["shape"] != shape for o in objects)
        elif record["query"]["split"] == "popular":
            present = {(o["colour"], o["shape"]) for o in objects}
            absent_weights = [SHAPE_WEIGHTS[SHAPES.index(s)] for c in COLOURS for s in SHAPES if (c, s) not in present]
            assert SHAPE_WEIGHTS[SHAPES.index(shape)] == max(absent_weights)
    assert {r["query"]["split"] for r in pope} == set(POPE_SPLITS)


def test_vocabulary_covers_every_emitted_word(synthetic):
    vocabulary = set(synthetic_vocabulary())
    texts = []
    for path in (synthetic.train_path, synthetic.test_path, synthetic.captions_path, synthetic.instructions_path):
        for record in _load(path):
            texts += [turn["value"].replace("<image>", "") for turn in record["conversations"]]
            texts += [record.get("rationale") or "", record.get("hint") or "", *(record.get("options") or [])]
    exports = synthetic.exports_dir
    with open(exports / "mmstar.tsv", encoding="utf-8", newline="") as handle:
        texts += [row["question"] for row in csv.DictReader(handle, delimiter="\t")]
    with open(exports / "mmvp" / "Questions.csv", encoding="utf-8", newline="") as handle:
        texts += [row["Options"] + " " + row["Correct Answer"] for row in csv.DictReader(handle)]
    texts += [turn["value"].replace("<image>", "") for record in _load(exports / "scienceqa" / "llava_test_CQM-A.json")
              for turn in record["conversations"]]
    missing = {word for text in texts for word in WORD_PATTERN.findall(text)} - vocabulary
    assert missing == set()
    assert vocabulary_corpus() == vocabulary_corpus()
    assert "The answer is A." in vocabulary_corpus()


def test_official_exports_reread_with_stdlib_parsers(synthetic):
    """MMBench/MMStar TSV, POPE JSONL, MMVP CSV and ScienceQA LLaVA JSON, read back with csv/json only."""
    test = _load(synthetic.test_path)
    by_family = {family: [r for r in test if r["family"] == family] for family in FAMILIES}
    exports = synthetic.exports_dir

    def stored_pixels(record):
        return np.asarray(open_image(record["image"], image_root=synthetic.image_root))

    for name, columns in [("mmbench", ["index", "question", "hint", "A", "B", "C", "D", "answer", "category",
                                       "l2-category", "image"]),
                          ("mmstar", ["index", "question", "A", "B", "C", "D", "answer", "category", "l2_category",
                                      "bench", "image"])]:
        with open(exports / f"{name}.tsv", encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, dialect="excel-tab")
            rows = list(reader)
        assert reader.fieldnames == columns
        assert len(rows) == len(by_family[name]) == 8
        for row, record in zip(rows, by_family[name]):
            assert [row[letter] for letter in LETTERS] == record["options"]
            assert row["answer"] == record["answer"]
            assert row["question"].split("\n")[0] == record["conversations"][0]["value"].split("\n")[1]
            assert np.array_equal(np.asarray(decode_base64_image(row["image"])), stored_pixels(record))
        if name == "mmstar":
            assert rows[0]["question"].split("\n")[1].startswith("Options: A: ")

    pope_records = {r["id"]: r for r in by_family["pope"]}
    seen = []
    for split in POPE_SPLITS:
        lines = (exports / "pope" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines]
        assert [e["question_id"] for e in entries] == list(range(1, len(entries) + 1))
        for entry in entries:
            record = pope_records[entry["image"].removesuffix(".png")]
            assert record["query"]["split"] == split
            assert (entry["text"], entry["label"]) == (record["conversations"][0]["value"].split("\n")[1],
                                                       record["answer"])
            pixels = np.asarray(open_image(entry["image"], image_root=exports / "pope" / "images"))
            assert np.array_equal(pixels, stored_pixels(record))
            seen.append(record["id"])
    assert sorted(seen) == sorted(pope_records)

    with open(exports / "mmvp" / "Questions.csv", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["Index", "Question", "Options", "Correct Answer"]
    assert len(rows) == 8
    for row, record in zip(rows, by_family["mmvp"]):
        options = re.findall(r"\(([a-z])\) (\w+)", row["Options"])
        assert options == [(letter.lower(), option) for letter, option in zip(LETTERS, record["options"])]
        assert row["Correct Answer"] == f"({record['answer'].lower()})"
        image = open_image(f"{row['Index']}.jpg", image_root=exports / "mmvp" / "MMVP Images")
        assert image.format is None and image.size == (64, 64)
        # A real JPEG at quality 95: close to the PNG, not identical.
        difference = np.abs(np.asarray(image).astype(int) - stored_pixels(record).astype(int))
        assert difference.mean() < 4
    assert (exports / "mmvp" / "MMVP Images" / "1.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    for first, second in zip(rows[::2], rows[1::2]):
        assert first["Question"] == second["Question"] and first["Correct Answer"] != second["Correct Answer"]

    sqa = exports / "scienceqa"
    conversations = _load(sqa / "llava_test_CQM-A.json")
    problems = _load(sqa / "problems.json")
    assert _load(sqa / "pid_splits.json") == {"test": [r["id"] for r in by_family["scienceqa"]]}
    records, summary = load_records(sqa / "llava_test_CQM-A.json", sqa / "images" / "test", on_bad="raise")
    assert summary.n_kept == len(conversations) == 8
    for entry, record in zip(conversations, by_family["scienceqa"]):
        prompt = entry["conversations"][0]["value"]
        assert prompt.startswith("<image>\nContext: In this picture, ")
        options = dict(re.findall(r"\(([A-D])\) (\w+)", prompt.split("Options: ")[1]))
        assert list(options.values()) == record["options"]
        assert entry["conversations"][1]["value"] == f"The answer is {record['answer']}."
        problem = problems[entry["id"]]
        assert LETTERS[problem["answer"]] == record["answer"] and problem["choices"] == record["options"]
        assert np.array_equal(np.asarray(open_image(entry["image"], image_root=sqa / "images" / "test")),
                              stored_pixels(record))


def test_stats_file_reports_chance_and_majority_per_family(synthetic):
    stats = json.loads(synthetic.stats_path.read_text())
    assert set(stats["families"]) == FAMILIES
    for family, entry in stats["families"].items():
        assert entry["n_test"] == 8 and entry["n_train"] == 8
        assert 0 < entry["chance"] <= entry["majority"] <= 1
        assert entry["chance"] == pytest.approx(synthetic.families[family].chance)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "bench"
    generate_synthetic(out, n_train=10, n_test=5, seed=0)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_synthetic(out, n_train=5, n_test=5, seed=0)
    summary = generate_synthetic(out, n_train=5, n_test=5, seed=0, overwrite=True)
    assert len(list((out / "images" / "train").iterdir())) == summary.n_train == 5  # stale images are gone
    assert (out / "notes.txt").read_text() == "mine"  # files it does not own are left alone
