"""lare.data.records: every kind of bad input is rejected with its reason; no good record is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from lare.data.records import Record, RecordError, load_records, validate_record
from tests.data.image_files import bomb_png, encoded, noise_image, truncated, write


def _conversation(question: str = "<image>\nWhat is shown?", answer: str = "A shape.") -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def _record(record_id, image="good.png", **fields) -> dict:
    record = {"id": record_id, "image": image, "conversations": _conversation()}
    record.update(fields)
    return record


def _build_image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write(root / "good.png", encoded(noise_image((32, 24)), "PNG"))
    write(root / "good.jpg", encoded(noise_image((32, 24), seed=1), "JPEG"))
    write(root / "sub" / "rgba.png", encoded(Image.new("RGBA", (8, 8), (0, 0, 255, 128)), "PNG"))
    write(root / "zero.png", b"")
    write(root / "trunc.png", truncated(encoded(noise_image(), "PNG")))
    write(root / "trunc.jpg", truncated(encoded(noise_image(), "JPEG")))
    write(root / "bomb.png", bomb_png())
    write(root / "float.tiff", encoded(Image.new("F", (4, 4), 0.5), "TIFF"))
    write(root / "text.png", b"plain text, not an image")
    secret = write(tmp_path / "outside" / "secret.png", encoded(noise_image((8, 8)), "PNG"))
    os.symlink(secret, root / "link_out.png")
    return root


def _bad_inputs(tmp_path: Path) -> list[tuple[object, str, str, str]]:
    """`(record JSON or raw line bytes, expected id, field, reason)`; id None: the record has no usable id."""
    absolute = str(tmp_path / "outside" / "secret.png")
    non_utf8 = (b'{"id": "bad-utf8", "image": "good.png", "conversations": [{"from": "human", "value": '
                b'"<image>\\nWhat is \xff\xfe this?"}, {"from": "gpt", "value": "A shape."}]}')
    return [
        (_record("missing-file", "nowhere.png"), "missing-file", "image", "file not found"),
        (_record("zero-bytes", "zero.png"), "zero-bytes", "image", "zero-byte file"),
        (_record("truncated-png", "trunc.png"), "truncated-png", "image", "corrupt or truncated image"),
        (_record("truncated-jpeg", "trunc.jpg"), "truncated-jpeg", "image", "corrupt or truncated image"),
        (_record("not-an-image", "text.png"), "not-an-image", "image", "not a recognised image format"),
        (_record("bomb", "bomb.png"), "bomb", "image", "decompression bomb"),
        (_record("escape-dotdot", "../outside/secret.png"), "escape-dotdot", "image", "path escapes image root"),
        (_record("escape-symlink", "link_out.png"), "escape-symlink", "image", "path escapes image root"),
        (_record("escape-absolute", absolute), "escape-absolute", "image", "absolute path not allowed"),
        (_record("unsupported-mode", "float.tiff"), "unsupported-mode", "image", "unsupported image mode"),
        (_record("image-wrong-type", ["good.png"]), "image-wrong-type", "image", "expected a non-empty string path"),
        ({**_record("conv-wrong-type"), "conversations": "hello"}, "conv-wrong-type", "conversations",
         "expected a list of turns"),
        ({**_record("value-wrong-type"), "conversations": [{"from": "human", "value": 7}]}, "value-wrong-type",
         "conversations[0].value", "expected a string"),
        ({**_record("empty-conversation"), "conversations": []}, "empty-conversation", "conversations",
         "empty conversation"),
        ({**_record("empty-text"), "conversations": _conversation(answer="  ")}, "empty-text",
         "conversations[1].value", "empty text"),
        ({**_record("bad-role"), "conversations": [{"from": "user", "value": "<image>\nHi"},
                                                   {"from": "gpt", "value": "Hello."}]},
         "bad-role", "conversations[0].from", "expected 'human' or 'gpt'"),
        ({**_record("no-answer-turn"), "conversations": _conversation()[:1]}, "no-answer-turn", "conversations",
         "the last turn must be a gpt answer"),
        ({**_record("missing-marker"), "conversations": _conversation(question="What is shown?")},
         "missing-marker", "conversations", "a record with an image needs exactly one <image> marker"),
        ({**_record("two-markers"), "conversations": _conversation(question="<image><image>\nWhat?")},
         "two-markers", "conversations", "a record with an image needs exactly one <image> marker"),
        ({"id": "marker-without-image", "conversations": _conversation()}, "marker-without-image", "conversations",
         "<image> marker in a record without an image"),
        (non_utf8, "bad-utf8", "conversations[0].value", "text is not valid UTF-8"),
        (_record("rationale-wrong-type", rationale=["step"]), "rationale-wrong-type", "rationale",
         "expected a string"),
        (_record("answer-not-an-option", options=["red", "blue"], answer="C"), "answer-not-an-option", "answer",
         "answer is neither an option letter nor an option"),
        (_record("box-outside", boxes=[[0, 0, 40, 10]]), "box-outside", "boxes[0]", "box is empty or outside"),
        (_record("box-wrong-type", boxes=[[0, 0, "1", 1]]), "box-wrong-type", "boxes[0]", "expected four numbers"),
        ({"image": "good.png", "conversations": _conversation()}, None, "id", "expected a string or integer"),
        (b'{"id": "broken json", ', None, "json", "not valid JSON"),
        (_record("good-1"), "good-1", "id", "duplicate id"),  # repeats the first good record's id
        ([1, 2, 3], None, "record", "expected a JSON object"),
    ]


def _good_records() -> list[dict]:
    return [
        _record("good-1"),
        _record(2, "good.jpg", rationale="Find it. It is there.", answer="B", options=["red", "blue"],
                boxes=[[0, 0, 32, 24], [1.5, 2, 3, 4]], family="mmbench", scene={"objects": []}),
        _record("good-rgba", "sub/rgba.png"),
        _record("good-shared-image"),  # the same file as good-1: decoded once, still validated
        {"id": "good-text-only", "conversations": _conversation(question="What is 2 + 2?", answer="4")},
        _record("good-dotdot-inside", "sub/../good.png"),
    ]


def _write_jsonl(path: Path, entries: list[object]) -> None:
    lines = [entry if isinstance(entry, bytes) else json.dumps(entry).encode() for entry in entries]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_bad_corpus_every_bad_record_rejected_every_good_record_kept(tmp_path):
    root = _build_image_root(tmp_path)
    good, bad = _good_records(), _bad_inputs(tmp_path)
    data = tmp_path / "data.jsonl"
    _write_jsonl(data, good + [entry for entry, *_ in bad])
    rejects_path = tmp_path / "out" / "rejects.jsonl"

    records, summary = load_records(data, root, on_bad="skip", rejects_path=rejects_path)

    assert len(bad) >= 12
    assert [r.id for r in records] == ["good-1", "2", "good-rgba", "good-shared-image", "good-text-only",
                                       "good-dotdot-inside"]
    assert (summary.n_read, summary.n_kept, summary.n_rejected) == (len(good) + len(bad), len(good), len(bad))
    assert sum(summary.reasons.values()) == len(bad)
    rejects = [json.loads(line) for line in rejects_path.read_text(encoding="utf-8").splitlines()]
    assert len(rejects) == len(bad)
    for line, (reject, (_, record_id, field, reason)) in enumerate(zip(rejects, bad), start=len(good) + 1):
        assert reject["id"] == (record_id or f"<line {line}>")  # without an id, the line names the record
        assert reject["field"] == field, record_id
        assert reject["reason"].startswith(reason), (record_id, reject["reason"])
    # The summary counts short "<field>: <reason>" keys, so equal causes add up.
    assert summary.reasons["image: corrupt or truncated image"] == 2
    assert summary.reasons["image: path escapes image root"] == 2


def test_good_records_are_typed(tmp_path):
    root = _build_image_root(tmp_path)
    data = tmp_path / "data.json"
    data.write_text(json.dumps(_good_records()), encoding="utf-8")  # a JSON array this time

    records, summary = load_records(data, root)

    assert summary.n_rejected == 0
    second = records[1]
    assert isinstance(second, Record)
    assert second.id == "2" and second.image == "good.jpg" and second.answer == "B"
    assert second.options == ["red", "blue"] and second.boxes == [[0, 0, 32, 24], [1.5, 2, 3, 4]]
    assert second.family == "mmbench" and second.meta == {"scene": {"objects": []}}
    assert second.question.startswith("<image>") and second.target == "A shape."
    assert records[4].image is None


def test_raise_mode_stops_at_first_bad_record_naming_id_field_reason(tmp_path):
    root = _build_image_root(tmp_path)
    data = tmp_path / "data.jsonl"
    _write_jsonl(data, [_record("fine"), _record("the-bad-one", "trunc.png"), _record("missing", "nowhere.png")])

    with pytest.raises(RecordError) as error:
        load_records(data, root, on_bad="raise")

    assert (error.value.record_id, error.value.field) == ("the-bad-one", "image")
    message = str(error.value)
    assert "the-bad-one" in message and "'image'" in message and "corrupt or truncated image" in message
    assert isinstance(error.value, ValueError)


def test_validate_record_single(tmp_path):
    root = _build_image_root(tmp_path)
    record = validate_record(_record("x", answer="yes"), root)
    assert record.answer == "yes" and record.options is None
    with pytest.raises(RecordError, match="zero-byte file"):
        validate_record(_record("y", "zero.png"), root)


def test_unknown_on_bad_mode_is_an_error(tmp_path):
    data = tmp_path / "data.jsonl"
    _write_jsonl(data, [])
    with pytest.raises(ValueError, match="on_bad"):
        load_records(data, tmp_path, on_bad="ignore")
