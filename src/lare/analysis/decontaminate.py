"""Training-data decontamination against the evaluation benchmarks (the paper's Appendix, "Data Decontamination").

Two stages, in order; a record removed by the first is not looked at by the second:

1. Exact question + answer match. Texts are normalised (image marker removed, case-folded, whitespace collapsed,
   punctuation stripped at both ends). A question is compared both in full and without its option / context
   lines (benchmark loaders keep options apart from the question, LLaVA prompts inline them), and a letter answer
   also as its option's text (see `qa_keys`). A record matches when any key is shared. Templated questions
   ("Is there a red circle?" + "yes") collide across different images by design of the rule.
2. Near-duplicate images: every remaining training image and every benchmark image is embedded with a vision
   tower; a record whose image has cosine similarity ≥ `threshold` with any benchmark image is removed
   (nearest-neighbour search, exact, by matrix products in chunks).

Embeddings ("pooled", the default): a dual encoder's projected image embedding (`get_image_features`, the CLIP
image embedding the paper uses), else the tower's pooled output. "mean" averages the patch tokens of the last
hidden state instead (prefix tokens such as CLS left out).
"""

from __future__ import annotations

import json
import logging
import os
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lare.analysis.markdown import markdown_table
from lare.data.images import ImageError, open_image
from lare.data.records import IMAGE_MARKER, Record
from lare.evaluation.benchmarks.item import BenchmarkItem, ImageSource

logger = logging.getLogger(__name__)

REASONS = ("exact_qa", "near_duplicate_image")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Lines that carry options or context rather than the question itself: "A. cat", "(B) dog", "Options: ...".
_AUXILIARY_LINE = re.compile(r"^\s*(\(?[A-Z]\)|[A-Z][.:)]\s|options?\s*:|context\s*:|hint\s*:)", re.IGNORECASE)
_QUESTION_PREFIX = re.compile(r"^\s*question\s*:\s*", re.IGNORECASE)
_END_PUNCTUATION = string.punctuation + "“”‘’«»…。？！，"


def normalise_text(text: str) -> str:
    """Case-fold, drop the image marker, collapse whitespace and strip punctuation at both ends."""
    text = re.sub(r"\s+", " ", text.replace(IMAGE_MARKER, " ")).casefold()
    return text.strip().strip(_END_PUNCTUATION + " ").strip()


def question_variants(question: str) -> tuple[str, str]:
    """(the normalised question in full, the normalised question without option/context lines and "Question:")."""
    lines = [line for line in question.replace(IMAGE_MARKER, "\n").split("\n") if line.strip()]
    core = [_QUESTION_PREFIX.sub("", line) for line in lines if not _AUXILIARY_LINE.match(line)]
    return normalise_text(question), normalise_text("\n".join(core))


def qa_keys(question: str, answer: str | None, options: Sequence[str] | None = None) -> set[tuple[str, str]]:
    """The (question, answer) keys of one item.

    The full question pairs with the answer as given and, for a letter answer, with its option's text. The
    question without its options pairs only with answer texts: once the options are gone a letter means nothing
    (the same question with shuffled options has the same letters for different answers).
    """
    if answer is None or not answer.strip():
        return set()
    full, core = question_variants(question)
    given = normalise_text(answer)
    letter = answer.strip().upper()
    is_letter = bool(options) and len(letter) == 1 and letter in _LETTERS[:len(options)]
    texts = {normalise_text(options[_LETTERS.index(letter)])} if is_letter else {given}
    keys = {(full, given)} | {(full, text) for text in texts} | {(core, text) for text in texts}
    return {(q, a) for q, a in keys if q and a}


def benchmark_items_from_records(records: Sequence[Record], image_root: str | os.PathLike, name: str
                                 ) -> list[BenchmarkItem]:
    """LLaVA-format benchmark records (e.g. the synthetic `test.json`) as `BenchmarkItem`s named `name`."""
    return [
        BenchmarkItem(
            benchmark=name, id=record.id, question=record.question, answer=record.answer or record.target,
            options={_LETTERS[i]: text for i, text in enumerate(record.options or [])},
            image=ImageSource("path", record.image, Path(image_root)) if record.image is not None else None,
        )
        for record in records
    ]


@dataclass
class RemovedRecord:
    """One removed training record: why, and which benchmark item it collides with."""

    id: str
    reason: str
    benchmark: str
    benchmark_id: str
    similarity: float | None = None


@dataclass
class DecontaminationReport:
    """What `decontaminate` removed and kept.

    Attributes:
        removed: one entry per removed record, in training-file order.
        kept_ids: ids of the records that stay, in training-file order.
        counts: removed records per reason (`REASONS`).
        counts_by_benchmark: removed records per benchmark they collide with.
        unreadable_benchmark_images: "benchmark:id" of benchmark images that could not be decoded (logged; the
            image search could not use them).
    """

    n_train: int
    n_benchmark: int
    threshold: float
    pooling: str
    removed: list[RemovedRecord]
    kept_ids: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    counts_by_benchmark: dict[str, int] = field(default_factory=dict)
    unreadable_benchmark_images: list[str] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return len(self.kept_ids)


def _vision_config(vision_model: Any) -> Any:
    """The vision half's config (a dual encoder keeps it under `vision_config`)."""
    config = vision_model.config
    return config.vision_config if hasattr(config, "vision_config") else config


@torch.no_grad()
def embed_images(images: Sequence[Any], vision_model: Any, image_processor: Any, batch_size: int = 32,
                 pooling: Literal["pooled", "mean"] = "pooled") -> torch.Tensor:
    """L2-normalised image embeddings [N, d] (see the module docstring for the two poolings)."""
    if pooling not in ("pooled", "mean"):
        raise ValueError(f"pooling must be 'pooled' or 'mean', got {pooling!r}")
    device = next(vision_model.parameters()).device
    embeddings = []
    for start in range(0, len(images), batch_size):
        pixels = image_processor(images=list(images[start:start + batch_size]), return_tensors="pt")["pixel_values"]
        pixels = pixels.to(device=device, dtype=next(vision_model.parameters()).dtype)
        if pooling == "pooled" and hasattr(vision_model, "get_image_features"):
            out = vision_model.get_image_features(pixel_values=pixels)
            features = out if isinstance(out, torch.Tensor) else out.pooler_output  # [B, d]
        else:
            out = vision_model(pixel_values=pixels)
            if pooling == "pooled":
                if out.pooler_output is None:
                    raise ValueError(f"{type(vision_model).__name__} has no pooled output; use pooling='mean'")
                features = out.pooler_output  # [B, d]
            else:
                hidden = out.last_hidden_state  # [B, n_prefix + n_patches, d]
                config = _vision_config(vision_model)
                n_patches = (config.image_size // config.patch_size) ** 2
                features = hidden[:, hidden.shape[1] - n_patches:].mean(dim=1)  # [B, d]: CLS etc. left out
        embeddings.append(F.normalize(features.float(), dim=-1).cpu())
    return torch.cat(embeddings) if embeddings else torch.zeros(0, 0)


def _nearest(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """For unit rows, each query's highest cosine similarity with any key, and that key's index ([Q] each)."""
    best, where = [], []
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start:start + chunk] @ keys.T  # [q, K]
        value, index = sims.max(dim=1)
        best.append(value)
        where.append(index)
    return torch.cat(best), torch.cat(where)


def decontaminate(train_records: Sequence[Record], benchmark_items: Sequence[BenchmarkItem], vision_model: Any,
                  image_processor: Any, threshold: float = 0.9, train_image_root: str | os.PathLike | None = None,
                  batch_size: int = 32, pooling: Literal["pooled", "mean"] = "pooled") -> DecontaminationReport:
    """Remove training records that match a benchmark question+answer exactly or whose image nearly duplicates a
    benchmark image.

    Args:
        train_records: validated training records (`lare.data.records.load_records`).
        benchmark_items: benchmark questions from the evaluation loaders (`lare.evaluation.benchmarks`) or from
            LLaVA records (`benchmark_items_from_records`).
        vision_model: any HF vision tower or dual encoder (e.g. `AutoModel.from_pretrained(clip_dir)`), in eval mode.
        image_processor: its image processor.
        threshold: cosine similarity at or above which two images count as near-duplicates.
        train_image_root: folder the training records' image paths are relative to.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    bench_keys: dict[tuple[str, str], BenchmarkItem] = {}
    for item in benchmark_items:
        options = list(item.options.values()) if item.options else None
        for key in qa_keys(item.question, item.answer, options):
            bench_keys.setdefault(key, item)

    removed: dict[str, RemovedRecord] = {}
    for record in train_records:
        answer = record.answer if record.answer is not None else record.target
        match = next((bench_keys[k] for k in qa_keys(record.question, answer, record.options) if k in bench_keys),
                     None)
        if match is not None:
            removed[record.id] = RemovedRecord(record.id, "exact_qa", match.benchmark, str(match.id))

    # Stage 2: one embedding per distinct image on each side.
    bench_sources: dict[ImageSource, BenchmarkItem] = {}
    for item in benchmark_items:
        if item.image is not None:
            bench_sources.setdefault(item.image, item)
    train_paths: dict[str, list[Record]] = {}
    for record in train_records:
        if record.id not in removed and record.image is not None:
            train_paths.setdefault(record.image, []).append(record)
    unreadable: list[str] = []
    if bench_sources and train_paths:
        bench_list, bench_images = [], []
        for source, item in bench_sources.items():
            try:
                bench_images.append(source.load())
            except ImageError as error:
                # Nothing can be compared with it; say so in the report rather than fail or drop it silently.
                logger.warning("benchmark %s item %s: image unreadable (%s); not used for the image search",
                               item.benchmark, item.id, error)
                unreadable.append(f"{item.benchmark}:{item.id}")
                continue
            bench_list.append(source)
        bench_embeds = embed_images(bench_images, vision_model, image_processor, batch_size, pooling)  # [K, d]
        del bench_images
        path_list = list(train_paths)
        train_embeds = torch.cat([
            embed_images([open_image(p, image_root=train_image_root) for p in path_list[start:start + batch_size]],
                         vision_model, image_processor, batch_size, pooling)
            for start in range(0, len(path_list), batch_size)
        ])  # [U, d]; training images are opened one batch at a time to bound memory
        if bench_list:
            similarity, nearest = _nearest(train_embeds, bench_embeds)
            for path, sim, index in zip(path_list, similarity.tolist(), nearest.tolist(), strict=True):
                if sim >= threshold:
                    match = bench_sources[bench_list[index]]
                    for record in train_paths[path]:
                        removed[record.id] = RemovedRecord(record.id, "near_duplicate_image", match.benchmark,
                                                           str(match.id), similarity=float(sim))
    ordered = [removed[r.id] for r in train_records if r.id in removed]
    report = DecontaminationReport(
        n_train=len(train_records), n_benchmark=len(benchmark_items), threshold=threshold, pooling=pooling,
        removed=ordered, kept_ids=[r.id for r in train_records if r.id not in removed],
        counts={reason: sum(r.reason == reason for r in ordered) for reason in REASONS},
        counts_by_benchmark=dict(sorted(Counter(r.benchmark for r in ordered).items())),
        unreadable_benchmark_images=unreadable,
    )
    logger.info("decontamination: %d of %d training records removed (%s)", len(ordered), len(train_records),
                report.counts)
    return report


def record_to_json(record: Record) -> dict[str, Any]:
    """A validated record back to its LLaVA JSON form (unknown fields come back from `meta` verbatim)."""
    data: dict[str, Any] = {"id": record.id, "image": record.image, "conversations": record.conversations}
    for name in ("rationale", "answer", "options", "boxes", "family"):
        if getattr(record, name) is not None:
            data[name] = getattr(record, name)
    data.update(record.meta)
    return data


def decontamination_markdown(report: DecontaminationReport, max_rows: int = 50) -> str:
    """Counts per reason and per benchmark, then the first `max_rows` removed records."""
    rows = [[r.id, r.reason, r.benchmark, r.benchmark_id, r.similarity] for r in report.removed[:max_rows]]
    text = [
        "# Decontamination", "",
        f"{report.n_train} training records against {report.n_benchmark} benchmark questions: "
        f"{len(report.removed)} removed, {report.n_kept} kept (image cosine threshold {report.threshold:g}, "
        f"{report.pooling} embeddings)."
        + (f" {len(report.unreadable_benchmark_images)} benchmark images could not be read and were not searched."
           if report.unreadable_benchmark_images else ""), "",
        markdown_table(["reason", "removed"], [[k, v] for k, v in report.counts.items()]),
        markdown_table(["benchmark", "removed"], [[k, v] for k, v in report.counts_by_benchmark.items()]),
        markdown_table(["id", "reason", "benchmark", "benchmark id", "similarity"], rows, digits=4),
    ]
    if len(report.removed) > max_rows:
        text.append(f"… and {len(report.removed) - max_rows} more (see decontamination.json).\n")
    return "\n".join(text)


def write_decontamination(report: DecontaminationReport, train_records: Sequence[Record], out_dir: str | Path,
                          filtered_name: str = "train.decontaminated.json") -> dict[str, Path]:
    """Write the kept records (`filtered_name`), `decontamination.json` and `decontamination.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"data": out / filtered_name, "json": out / "decontamination.json",
             "markdown": out / "decontamination.md"}
    kept = set(report.kept_ids)
    data = [record_to_json(record) for record in train_records if record.id in kept]
    paths["data"].write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    payload = {key: value for key, value in asdict(report).items() if key != "kept_ids"}
    payload["n_kept"] = report.n_kept
    paths["json"].write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(decontamination_markdown(report), encoding="utf-8")
    return paths
