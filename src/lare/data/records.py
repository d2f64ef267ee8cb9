"""LLaVA-format records: schema, validation and loading.

A record is LLaVA's conversation JSON (`id`, `image`, `conversations`) plus the optional reasoning fields `rationale`,
`answer`, `options` and `boxes`. Every record is validated before training starts, including a full decode of its
image, so a bad record is found up front and either rejected (written to a rejects file and counted) or stops the run.
Nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lare.data.images import DEFAULT_MAX_PIXELS, ImageError, open_image

logger = logging.getLogger(__name__)

IMAGE_MARKER = "<image>"
ROLES = ("human", "gpt")
_KNOWN_FIELDS = ("id", "image", "conversations", "rationale", "answer", "options", "boxes", "family", "meta")
_OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Record:
    """One validated training or evaluation record.

    Attributes:
        id: unique record id (integer ids in the file are converted to strings).
        image: image path relative to the image root, or None for a text-only record.
        conversations: alternating turns `{"from": "human" | "gpt", "value": str}`, starting with human.
        rationale: explicit multi-step reasoning text, if any.
        answer: the answer (an option letter, or a word such as yes/no), if any.
        options: multiple-choice option texts in letter order, if any.
        boxes: evidence boxes `[x0, y0, x1, y1]` in pixels of the image, if any.
        family: question family (e.g. "mmbench", "pope"), if any.
        meta: every other field of the raw record, kept verbatim.
    """

    id: str
    image: str | None
    conversations: list[dict[str, str]]
    rationale: str | None = None
    answer: str | None = None
    options: list[str] | None = None
    boxes: list[list[float]] | None = None
    family: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The first human turn (with its `<image>` marker)."""
        return self.conversations[0]["value"]

    @property
    def target(self) -> str:
        """The first gpt turn."""
        return self.conversations[1]["value"]


class RecordError(ValueError):
    """A record that fails validation. The message names the record id, the field and the reason."""

    def __init__(self, record_id: str, field: str, reason: str, detail: str | None = None) -> None:
        self.record_id = record_id
        self.field = field
        self.reason = reason
        self.detail = detail
        message = f"record {record_id!r}: field {field!r}: {reason}"
        super().__init__(f"{message} ({detail})" if detail else message)


@dataclass
class LoadSummary:
    """What `load_records` read, kept and rejected. `reasons` counts `"<field>: <reason>"` strings."""

    n_read: int = 0
    n_kept: int = 0
    n_rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def validate_record(
    raw: Any, image_root: str | os.PathLike | None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Record:
    """Validate one raw JSON record and return it as a `Record`.

    The image (when the record has one) is opened and fully decoded through `lare.data.images`.

    Raises:
        RecordError: naming the record id, the offending field and the reason.
    """
    return _RecordValidator(image_root, max_pixels).validate(raw, fallback_id="<unknown>")


class _RecordValidator:
    """Validates records one by one, decoding each distinct image file only once (POPE-style data reuses images)."""

    def __init__(self, image_root: str | os.PathLike | None, max_pixels: int) -> None:
        self.image_root = image_root
        self.max_pixels = max_pixels
        self._image_sizes: dict[str, tuple[int, int] | ImageError] = {}

    def validate(self, raw: Any, fallback_id: str) -> Record:
        if not isinstance(raw, dict):
            raise RecordError(fallback_id, "record", "expected a JSON object", type(raw).__name__)
        record_id = _check_id(raw.get("id"), fallback_id)
        _check_text_fields(raw, record_id)
        conversations = _check_conversations(raw.get("conversations"), record_id)
        image = raw.get("image")
        markers = [turn["value"].count(IMAGE_MARKER) for turn in conversations]
        image_size = None
        if image is None:
            if any(markers):
                raise RecordError(record_id, "conversations", "<image> marker in a record without an image")
        else:
            if not isinstance(image, str) or not image.strip():
                raise RecordError(record_id, "image", "expected a non-empty string path", _type_name(image))
            if markers[0] != 1 or any(markers[1:]):
                raise RecordError(
                    record_id,
                    "conversations",
                    "a record with an image needs exactly one <image> marker, in the first human turn",
                    f"markers per turn: {markers}",
                )
            image_size = self._image_size(image, record_id)
        rationale = _optional_text(raw, "rationale", record_id)
        answer = _optional_text(raw, "answer", record_id)
        options = _check_options(raw.get("options"), record_id)
        if options is not None and answer is not None:
            _check_answer_in_options(answer, options, record_id)
        boxes = _check_boxes(raw.get("boxes"), image_size, record_id)
        family = _optional_text(raw, "family", record_id)
        meta = raw.get("meta", {})
        if not isinstance(meta, dict):
            raise RecordError(record_id, "meta", "expected an object", _type_name(meta))
        meta = {**meta, **{key: value for key, value in raw.items() if key not in _KNOWN_FIELDS}}
        return Record(record_id, image, conversations, rationale, answer, options, boxes, family, meta)

    def _image_size(self, image: str, record_id: str) -> tuple[int, int]:
        if image not in self._image_sizes:
            try:
                with open_image(image, image_root=self.image_root, max_pixels=self.max_pixels) as opened:
                    self._image_sizes[image] = opened.size
            except ImageError as error:
                self._image_sizes[image] = error
        result = self._image_sizes[image]
        if isinstance(result, ImageError):
            raise RecordError(record_id, "image", result.reason, result.detail)
        return result


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_id(value: Any, fallback_id: str) -> str:
    # bool is an int subclass, but a boolean id is certainly a mistake.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise RecordError(fallback_id, "id", "expected a string or integer id", _type_name(value))
    if not value.strip():
        raise RecordError(fallback_id, "id", "empty id")
    if _has_invalid_unicode(value):
        raise RecordError(fallback_id, "id", "text is not valid UTF-8")
    return value


def _has_invalid_unicode(text: str) -> bool:
    # Files are decoded with surrogateescape, so undecodable bytes (and JSON "\udXXX" escapes of lone surrogates)
    # surface as lone surrogates, which cannot be encoded back to UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text_fields(raw: dict[str, Any], record_id: str) -> None:
    """Reject any string anywhere in the record that is not valid UTF-8, naming the field path."""

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            if _has_invalid_unicode(value):
                raise RecordError(record_id, path, "text is not valid UTF-8")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(raw, "")


def _check_conversations(value: Any, record_id: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise RecordError(record_id, "conversations", "expected a list of turns", _type_name(value))
    if not value:
        raise RecordError(record_id, "conversations", "empty conversation")
    turns = []
    for index, turn in enumerate(value):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise RecordError(record_id, where, "expected an object", _type_name(turn))
        role, text = turn.get("from"), turn.get("value")
        if role not in ROLES:
            raise RecordError(record_id, f"{where}.from", "expected 'human' or 'gpt'", repr(role))
        if role != ROLES[index % 2]:
            raise RecordError(record_id, f"{where}.from", "turns must alternate human, gpt, starting with human")
        if not isinstance(text, str):
            raise RecordError(record_id, f"{where}.value", "expected a string", _type_name(text))
        if not text.replace(IMAGE_MARKER, "").strip():
            raise RecordError(record_id, f"{where}.value", "empty text")
        turns.append({"from": role, "value": text})
    if len(turns) % 2:
        raise RecordError(record_id, "conversations", "the last turn must be a gpt answer")
    return turns


def _optional_text(raw: dict[str, Any], key: str, record_id: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(record_id, key, "expected a string", _type_name(value))
    if not value.strip():
        raise RecordError(record_id, key, "empty text")
    return value


def _check_options(value: Any, record_id: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise RecordError(record_id, "options", "expected a non-empty list of strings", _type_name(value))
    if len(value) > len(_OPTION_LETTERS):
        raise RecordError(record_id, "options", "too many options", str(len(value)))
    for index, option in enumerate(value):
        if not isinstance(option, str) or not option.strip():
            raise RecordError(record_id, f"options[{index}]", "expected a non-empty string", _type_name(option))
    return list(value)


def _check_answer_in_options(answer: str, options: list[str], record_id: str) -> None:
    # A multiple-choice answer is a letter within range or the text of one option; anything else is a label error.
    if answer in _OPTION_LETTERS[: len(options)] or answer in options:
        return
    raise RecordError(record_id, "answer", "answer is neither an option letter nor an option", repr(answer))


def _check_boxes(value: Any, image_size: tuple[int, int] | None, record_id: str) -> list[list[float]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError(record_id, "boxes", "expected a list of [x0, y0, x1, y1]", _type_name(value))
    if value and image_size is None:
        raise RecordError(record_id, "boxes", "boxes given for a record without an image")
    boxes = []
    for index, box in enumerate(value):
        where = f"boxes[{index}]"
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        ):
            raise RecordError(record_id, where, "expected four numbers [x0, y0, x1, y1]", repr(box))
        x0, y0, x1, y1 = box
        width, height = image_size
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise RecordError(record_id, where, "box is empty or outside the image", f"{box} in {width}x{height}")
        boxes.append(list(box))
    return boxes


def _read_raw_records(path: Path) -> list[tuple[Any, str]]:
    """Parse a JSON array or JSONL file into `(raw record, fallback id)` pairs.

    Bytes are decoded with surrogateescape so that one record with non-UTF-8 text is rejected on its own (with its
    id) instead of making the whole file unreadable. An unparsable JSONL line becomes a `RecordError` entry.
    """
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if path.suffix != ".jsonl" and text.lstrip().startswith(("[", "{")):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            items = None  # a JSON object per line is JSONL whatever the suffix; handled below
        if isinstance(items, list):
            return [(item, f"<record {index}>") for index, item in enumerate(items)]
        if isinstance(items, dict):  # a file holding one record (or a one-line JSONL file)
            return [(items, "<record 0>")]
        if text.lstrip().startswith("["):
            raise ValueError(f"{path}: not a valid JSON array")
    entries: list[tuple[Any, str]] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fallback_id = f"<line {line_number}>"
        try:
            entries.append((json.loads(line), fallback_id))
        except json.JSONDecodeError as error:
            entries.append((RecordError(fallback_id, "json", "not valid JSON", str(error)), fallback_id))
    return entries


def load_records(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None,
    on_bad: Literal["skip", "raise"] = "skip",
    rejects_path: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[Record], LoadSummary]:
    """Read and validate LLaVA-format records from a JSON array or JSONL file.

    Args:
        path: the JSON (array of records) or JSONL (one record per line) file.
        image_root: directory that record `image` paths are relative to; paths may not escape it.
        on_bad: "skip" rejects bad records (logged, counted, written to `rejects_path`); "raise" stops at the first.
        rejects_path: JSONL file receiving one `{"id", "field", "reason"}` line per rejected record (skip mode).
        max_pixels: image size limit passed to `lare.data.images.open_image`.

    Returns:
        `(records, summary)`: the valid records in file order and a `LoadSummary`.

    Raises:
        RecordError: in "raise" mode, for the first bad record.
        ValueError: when `on_bad` is unknown or a JSON array file cannot be parsed at all.
    """
    if on_bad not in ("skip", "raise"):
        raise ValueError(f"on_bad must be 'skip' or 'raise', got {on_bad!r}")
    path = Path(path)
    validator = _RecordValidator(image_root, max_pixels)
    summary = LoadSummary()
    records: list[Record] = []
    rejects: list[RecordError] = []
    first_seen: dict[str, str] = {}
    for raw, fallback_id in _read_raw_records(path):
        summary.n_read += 1
        try:
            if isinstance(raw, RecordError):
                raise raw
            record = validator.validate(raw, fallback_id)
            if record.id in first_seen:
                raise RecordError(record.id, "id", "duplicate id", f"first seen at {first_seen[record.id]}")
            first_seen[record.id] = fallback_id
        except RecordError as error:
            if on_bad == "raise":
                raise
            logger.warning("rejected %s", error)
            rejects.append(error)
            summary.n_rejected += 1
            summary.reasons[f"{error.field}: {error.reason}"] += 1
            continue
        records.append(record)
        summary.n_kept += 1
    if rejects_path is not None:
        Path(rejects_path).parent.mkdir(parents=True, exist_ok=True)
        with open(rejects_path, "w", encoding="utf-8") as handle:
            for error in rejects:
                reason = f"{error.reason} ({error.detail})" if error.detail else error.reason
                line = {"id": error.record_id, "field": error.field, "reason": reason}
                # ensure_ascii keeps the file valid UTF-8 even when an id carries undecodable bytes.
                handle.write(json.dumps(line, ensure_ascii=True) + "\n")
    logger.info(
        "%s: read %d records, kept %d, rejected %d%s",
        path,
        summary.n_read,
        summary.n_kept,
        summary.n_rejected,
        f" ({dict(summary.reasons)})" if summary.reasons else "",
    )
    return records, summary
