"""Probing (the paper's Table 6): do the latents encode the image and the reasoning text?

A probe is a weak classifier that sees a pair (latent representation, anchor representation) and says whether they
come from the same (image, question) instance. High accuracy means the latents carry what the anchor carries.

Features (all from the model, pooled with the hybrid mean-max heads of its alignment loss):
- latent: `latent_pool` over the instance's latent tokens [T·k, D] (halted steps masked);
- vision anchor: `visual_pool` over the instance's visual tokens. With `vision_anchor="window"` (default) only the
  tokens inside the instance's refocus windows are pooled: the visual evidence the latents were built from. The
  whole-image pool (`"image"`) is identical for every question about one image, which makes the paper's
  "same image, different question" negatives exact copies of positives for the vision probe;
- text anchor: `text_pool` over the LLM hidden states of the record's explicit reasoning text (the rationale, or
  the answer turn when there is none), as in the alignment loss.

Pairs (`plan_probe_pairs`): positives are (latent, anchor) of the same record; negatives are split evenly between
(i) same image, different question: the anchor instance is (this image, another record's question);
(ii) same question, different image: (another record's image, this question); and (iii) random: another record.
A record that shares the image (or question) in the data is preferred as the partner; otherwise the instance is
built by crossing, and the model is run on it. The text anchor of a negative is the partner record's text.

Classifiers (`run_probe`): each side is projected to 256 dimensions by one fixed, seeded Gaussian matrix (shared
by both sides, so inner products are preserved; it stands in for the paper's "lightweight trainable linear layer",
leaving all learning to the probes) and L2-normalised. The pair feature is [z, x, z⊙x, |z−x|]. The pairs are
split 70/30, stratified by pair kind. A linear SVM (`LinearSVC`, C by 5-fold `GridSearchCV` on the training
part) and a one-hidden-layer MLP (PyTorch, Adam, early stopping on the validation loss of a held-out slice of the
training part) are scored on the test part.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from lare.analysis.markdown import markdown_table
from lare.analysis.samples import AnalysisSample, batched
from lare.data.records import IMAGE_MARKER
from lare.modeling.modeling_lare import positions_from_mask

logger = logging.getLogger(__name__)

NEGATIVE_KINDS = ("same_image", "same_question", "random")
PAIR_KINDS = ("positive", *NEGATIVE_KINDS)
SVM_C_GRID = (0.01, 0.1, 1.0, 10.0)
MIN_IMPROVEMENT = 1e-4  # early stopping: a smaller drop of the validation loss does not count


# ----------------------------------------------------------------------------------------------------------------
# Pairs
@dataclass
class ProbePlan:
    """The pairs to probe, as record indices; every array is [P].

    Attributes:
        latent: record whose latents are the pair's first member.
        image_source / question_source: the anchor instance is (image of `image_source`, question of
            `question_source`); (i, i) for a positive.
        partner: record whose reasoning text is the text anchor.
        label: 1 for a positive, 0 for a negative.
        kind: one of `PAIR_KINDS`.
    """

    latent: np.ndarray
    image_source: np.ndarray
    question_source: np.ndarray
    partner: np.ndarray
    label: np.ndarray
    kind: np.ndarray

    def counts(self) -> dict[str, int]:
        return {kind: int((self.kind == kind).sum()) for kind in PAIR_KINDS}


def question_key(question: str) -> str:
    """Normalised question text: image marker removed, case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", question.replace(IMAGE_MARKER, " ")).strip().casefold()


def image_key(image: Any) -> str:
    """A digest of the decoded pixels, so two records naming the same picture share a key."""
    pixels = np.asarray(image.convert("RGB"))
    return hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


def plan_probe_pairs(image_keys: Sequence[str], question_keys: Sequence[str], n_pairs: int = 1000,
                     n_positive: int = 500, seed: int = 0) -> ProbePlan:
    """Draw positives (distinct records) and negatives split evenly between the three kinds.

    With fewer records than `n_positive`, every record is a positive once (no record twice, so the train and
    test parts never share a positive) and the negatives shrink to keep the positive:negative ratio.
    """
    n = len(image_keys)
    if n != len(question_keys):
        raise ValueError(f"got {n} image keys but {len(question_keys)} question keys")
    if not 0 < n_positive < n_pairs:
        raise ValueError(f"need 0 < n_positive < n_pairs, got {n_positive} and {n_pairs}")
    if n < 3:
        raise ValueError(f"probing needs at least 3 records, got {n}")
    rng = np.random.default_rng(seed)
    n_pos = min(n_positive, n)
    n_neg = round(n_pos * (n_pairs - n_positive) / n_positive)
    if n_pos < n_positive:
        logger.warning("only %d records: probing %d positive and %d negative pairs instead of %d and %d", n,
                       n_pos, n_neg, n_positive, n_pairs - n_positive)
    by_image, by_question = defaultdict(list), defaultdict(list)
    for index, (ik, qk) in enumerate(zip(image_keys, question_keys, strict=True)):
        by_image[ik].append(index)
        by_question[qk].append(index)

    def other(i: int, natural: list[int], valid: Any) -> int | None:
        """A partner s for record i (valid(s) true): from the natural candidates when any, else by rejection."""
        candidates = [s for s in natural if s != i and valid(s)]
        if candidates:
            return int(rng.choice(candidates))
        for _ in range(50 * n):
            s = int(rng.integers(n))
            if s != i and valid(s):
                return s
        return None

    rows: list[tuple[int, int, int, int, int, str]] = [(i, i, i, i, 1, "positive")
                                                       for i in map(int, rng.choice(n, n_pos, replace=False))]
    seen: set[tuple] = set()
    per_kind = [n_neg // 3 + (k < n_neg % 3) for k in range(3)]
    for kind, count in zip(NEGATIVE_KINDS, per_kind, strict=True):
        made = attempts = 0
        while made < count:
            attempts += 1
            if attempts > 100 * count + 1000:
                raise ValueError(f"cannot draw {count} '{kind}' negatives from {n} records: too few distinct "
                                 "images or questions")
            i = int(rng.integers(n))
            ik, qk = image_keys[i], question_keys[i]
            if kind == "same_image":
                s = other(i, by_image[ik], lambda s, qk=qk: question_keys[s] != qk)
                anchor = (i, s)
            elif kind == "same_question":
                s = other(i, by_question[qk], lambda s, ik=ik: image_keys[s] != ik)
                anchor = (s, i)
            else:
                s = other(i, [], lambda s, ik=ik, qk=qk: (image_keys[s], question_keys[s]) != (ik, qk))
                anchor = (s, s)
            if s is None:
                continue
            key = (i, image_keys[anchor[0]], question_keys[anchor[1]], s)
            if key in seen and attempts < 20 * count + 100:  # prefer distinct pairs; accept repeats if we must
                continue
            seen.add(key)
            rows.append((i, anchor[0], anchor[1], s, 0, kind))
            made += 1
    columns = list(zip(*rows, strict=True))  # rows → columns
    return ProbePlan(latent=np.array(columns[0]), image_source=np.array(columns[1]),
                     question_source=np.array(columns[2]), partner=np.array(columns[3]),
                     label=np.array(columns[4]), kind=np.array(columns[5], dtype=object))


# ----------------------------------------------------------------------------------------------------------------
# Classifiers
@dataclass
class ProbeScores:
    """Test accuracy of both probes, overall and per pair kind, plus what was fitted."""

    svm_accuracy: float
    mlp_accuracy: float
    svm_per_kind: dict[str, float]
    mlp_per_kind: dict[str, float]
    svm_c: float
    svm_cv_accuracy: float
    mlp_epochs: int
    n_train: int
    n_test: int


def project_and_normalise(features: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """[P, d] @ [d, p] → [P, p], each row L2-normalised."""
    projected = features.astype(np.float64) @ projection  # [P, p]
    return projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)


def pair_features(latent: np.ndarray, anchor: np.ndarray, projection_dim: int = 256, seed: int = 0) -> np.ndarray:
    """[z, x, z⊙x, |z−x|] of the projected, L2-normalised sides: [P, d] × 2 → [P, 4·projection_dim]."""
    if latent.shape != anchor.shape:
        raise ValueError(f"latent {latent.shape} and anchor {anchor.shape} features must have the same shape")
    rng = np.random.default_rng(seed)
    # One matrix for both sides: they live in the alignment loss's shared space, and a shared map keeps z·x.
    projection = rng.standard_normal((latent.shape[1], projection_dim)) / np.sqrt(projection_dim)  # [d, p]
    z = project_and_normalise(latent, projection)
    x = project_and_normalise(anchor, projection)
    return np.concatenate([z, x, z * x, np.abs(z - x)], axis=1).astype(np.float32)  # [P, 4p]


def _accuracy_per_kind(correct: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    return {kind: float(correct[kinds == kind].mean()) for kind in PAIR_KINDS if (kinds == kind).any()}


def _fit_mlp(x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int, hidden: int,
             lr: float, max_epochs: int, patience: int, batch_size: int | None) -> tuple[nn.Module, int]:
    """One-hidden-layer MLP, Adam, early stopping on validation loss; returns the best-validation weights."""
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the layers' init draws from the global generator
    mlp = nn.Sequential(nn.Linear(x_fit.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    torch.random.set_rng_state(torch_state)
    optimizer = torch.optim.Adam(mlp.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    xf, yf = torch.from_numpy(x_fit), torch.from_numpy(y_fit).float()
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val).float()
    batch_size = batch_size or len(xf)
    best_loss, best_state, best_epoch, waited = float("inf"), copy.deepcopy(mlp.state_dict()), 0, 0
    for epoch in range(1, max_epochs + 1):
        mlp.train()
        order = torch.randperm(len(xf), generator=generator)
        for start in range(0, len(xf), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(mlp(xf[index]).squeeze(-1), yf[index]).backward()
            optimizer.step()
        mlp.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(mlp(xv).squeeze(-1), yv))
        if val_loss < best_loss - MIN_IMPROVEMENT:
            best_loss, best_state, best_epoch, waited = val_loss, copy.deepcopy(mlp.state_dict()), epoch, 0
        else:
            waited += 1
            if waited >= patience:
                break
    mlp.load_state_dict(best_state)
    return mlp.eval(), best_epoch


def run_probe(latent: np.ndarray, anchor: np.ndarray, labels: np.ndarray, kinds: np.ndarray, seed: int = 0,
              projection_dim: int = 256, test_size: float = 0.3, cv_folds: int = 5, mlp_hidden: int = 128,
              mlp_lr: float = 1e-2, mlp_max_epochs: int = 150, mlp_patience: int = 15,
              mlp_batch_size: int | None = None) -> ProbeScores:
    """Train and test both probes on pairs.

    Args:
        latent / anchor: [P, d] per-pair features (pooled, before projection).
        labels: [P] 1 = same instance, 0 = not.
        kinds: [P] pair kinds (the split is stratified by them).
        mlp_batch_size: Adam mini-batch size; None trains full-batch (a few hundred pairs: fast and stable).
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.svm import LinearSVC

    labels = np.asarray(labels).astype(np.int64)
    kinds = np.asarray(kinds, dtype=object)
    features = pair_features(latent, anchor, projection_dim, seed)  # [P, 4p]
    train, test = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=kinds, random_state=seed)
    folds = min(cv_folds, int(np.bincount(labels[train], minlength=2).min()))
    if folds < 2:
        raise ValueError(f"too few pairs to cross-validate: {np.bincount(labels[train], minlength=2).tolist()} "
                         "negative/positive pairs in the training part")
    # The primal solver: with ~1k pairs and 4·256 features it converges far faster than the dual at large C.
    search = GridSearchCV(LinearSVC(dual=False, max_iter=5000, random_state=seed), {"C": list(SVM_C_GRID)},
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="accuracy")
    search.fit(features[train], labels[train])
    svm_correct = search.predict(features[test]) == labels[test]

    fit, val = train_test_split(train, test_size=0.15, stratify=labels[train], random_state=seed)
    mlp, epochs = _fit_mlp(features[fit], labels[fit], features[val], labels[val], seed, mlp_hidden, mlp_lr,
                           mlp_max_epochs, mlp_patience, mlp_batch_size)
    with torch.no_grad():
        mlp_pred = (mlp(torch.from_numpy(features[test])).squeeze(-1) > 0).numpy()
    mlp_correct = mlp_pred.astype(np.int64) == labels[test]
    return ProbeScores(
        svm_accuracy=float(svm_correct.mean()), mlp_accuracy=float(mlp_correct.mean()),
        svm_per_kind=_accuracy_per_kind(svm_correct, kinds[test]),
        mlp_per_kind=_accuracy_per_kind(mlp_correct, kinds[test]),
        svm_c=float(search.best_params_["C"]), svm_cv_accuracy=float(search.best_score_), mlp_epochs=epochs,
        n_train=len(train), n_test=len(test),
    )


# ----------------------------------------------------------------------------------------------------------------
# Features from a model
@dataclass
class ProbeFeatures:
    """Per-pair pooled features [P, S] (S = the alignment heads' shared size) and the plan they follow."""

    latent: np.ndarray
    vision: np.ndarray
    text: np.ndarray
    plan: ProbePlan


def _window_mask(windows: torch.Tensor, step_mask: torch.Tensor, side: int) -> torch.Tensor:
    """[B, T, 4] windows and [B, T] step mask → [B, side²] bool: patches inside any valid window."""
    rows = torch.arange(side, device=windows.device)
    r0, c0, r1, c1 = (windows[..., j, None] for j in range(4))  # each [B, T, 1]
    in_rows = (rows >= r0) & (rows < r1)  # [B, T, side]
    in_cols = (rows >= c0) & (rows < c1)  # [B, T, side]
    inside = in_rows[..., :, None] & in_cols[..., None, :] & step_mask[..., None, None]  # [B, T, side, side]
    return inside.any(dim=1).flatten(1)  # [B, side²]


@torch.no_grad()
def _instance_features(model: Any, processor: Any, instances: Sequence[tuple[Any, str]], batch_size: int,
                       vision_anchor: str) -> tuple[np.ndarray, np.ndarray]:
    """Run the latent loop on (image, question) instances → pooled latents [I, S] and vision anchors [I, S]."""
    heads = model.semantic_losses["alignment"]
    k, side = model.config.latent_tokens, model.config.grid_size
    latents, visions = [], []
    for chunk in batched(instances, batch_size):
        inputs = processor(images=[image for image, _ in chunk], text=[q for _, q in chunk],
                           return_tensors="pt").to(model.device)
        loop = model.latent_reasoning(**inputs)
        latent_mask = loop.step_mask.repeat_interleave(k, dim=1)  # [B, T·k]
        latents.append(heads.latent_pool(loop.latents.flatten(1, 2), latent_mask).float().cpu())  # [B, S]
        if vision_anchor == "window":
            visual_mask = _window_mask(loop.windows, loop.step_mask, side)  # [B, Nv]
        else:
            visual_mask = torch.ones(loop.visual_features.shape[:2], dtype=torch.bool, device=model.device)
        visions.append(heads.visual_pool(loop.visual_features, visual_mask).float().cpu())  # [B, S]
    return torch.cat(latents).numpy(), torch.cat(visions).numpy()


@torch.no_grad()
def _text_features(model: Any, processor: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """`text_pool` over the LLM hidden states of each text (no image in context, as in the alignment loss)."""
    heads = model.semantic_losses["alignment"]
    pooled = []
    for chunk in batched(texts, batch_size):
        encoded = processor.tokenizer(list(chunk), padding=True, add_special_tokens=False, return_tensors="pt")
        ids, mask = encoded["input_ids"].to(model.device), encoded["attention_mask"].to(model.device)
        hidden = model.decoder(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                               use_cache=False).last_hidden_state  # [B, L, D]
        pooled.append(heads.text_pool(hidden, mask).float().cpu())  # [B, S]
    return torch.cat(pooled).numpy()


def extract_probe_features(model: Any, processor: Any, samples: Sequence[AnalysisSample], plan: ProbePlan,
                           batch_size: int = 8, vision_anchor: Literal["window", "image"] = "window") -> ProbeFeatures:
    """Pooled latent, vision and text features for every pair of `plan` (indices into `samples`)."""
    if vision_anchor not in ("window", "image"):
        raise ValueError(f"vision_anchor must be 'window' or 'image', got {vision_anchor!r}")
    image_keys = [image_key(s.image) for s in samples]
    question_keys = [question_key(s.question) for s in samples]
    # Every instance the plan needs, once: the records' own (i, i), and the crossed (image of a, question of b).
    index: dict[tuple[str, str], int] = {}
    instances: list[tuple[Any, str]] = []
    for a, b in [(i, i) for i in plan.latent] + list(zip(plan.image_source, plan.question_source, strict=True)):
        key = (image_keys[a], question_keys[b])
        if key not in index:
            index[key] = len(instances)
            instances.append((samples[a].image, samples[b].question))
    logger.info("probe: %d instances (%d records, %d crossed)", len(instances), len(samples),
                max(0, len(instances) - len(samples)))
    latent, vision = _instance_features(model, processor, instances, batch_size, vision_anchor)  # [I, S] each
    partners = sorted(set(int(p) for p in plan.partner))
    texts = [samples[p].rationale or samples[p].target for p in partners]
    text = _text_features(model, processor, texts, batch_size)  # [len(partners), S]
    text_row = {p: row for row, p in enumerate(partners)}
    own = [index[(image_keys[i], question_keys[i])] for i in plan.latent]
    anchor = [index[(image_keys[a], question_keys[b])]
              for a, b in zip(plan.image_source, plan.question_source, strict=True)]
    return ProbeFeatures(latent=latent[own], vision=vision[anchor], text=text[[text_row[p] for p in plan.partner]],
                         plan=plan)


@dataclass
class ModelProbe:
    """Latent–vision and latent–text probe scores of one model."""

    label: str
    vision: ProbeScores
    text: ProbeScores
    pair_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class ProbeReport:
    """Table 6: one `ModelProbe` per model (e.g. with and without the Extractor)."""

    models: list[ModelProbe]
    vision_anchor: str
    seed: int


@contextlib.contextmanager
def refocus_mode(model: Any, mode: str) -> Iterator[Any]:
    """Temporarily switch `model.config.refocus` ("extractor" or "feedback"); restored on exit."""
    saved = model.config.refocus
    try:
        model.config.refocus = mode
        yield model
    finally:
        model.config.refocus = saved


def probe_model(model: Any, processor: Any, samples: Sequence[AnalysisSample], label: str, n_pairs: int = 1000,
                n_positive: int = 500, seed: int = 0, batch_size: int = 8,
                vision_anchor: Literal["window", "image"] = "window") -> ModelProbe:
    """Plan pairs over `samples`, extract the model's features and run both probes on both anchors."""
    plan = plan_probe_pairs([image_key(s.image) for s in samples], [question_key(s.question) for s in samples],
                            n_pairs, n_positive, seed)
    features = extract_probe_features(model, processor, samples, plan, batch_size, vision_anchor)
    vision = run_probe(features.latent, features.vision, plan.label, plan.kind, seed)
    text = run_probe(features.latent, features.text, plan.label, plan.kind, seed)
    logger.info("probe %s: vision SVM %.3f MLP %.3f, text SVM %.3f MLP %.3f", label, vision.svm_accuracy,
                vision.mlp_accuracy, text.svm_accuracy, text.mlp_accuracy)
    return ModelProbe(label=label, vision=vision, text=text, pair_counts=plan.counts())


def probe_extractor_ablation(model: Any, processor: Any, samples: Sequence[AnalysisSample],
                             without_extractor: Any | None = None, n_pairs: int = 1000, n_positive: int = 500,
                             seed: int = 0, batch_size: int = 8,
                             vision_anchor: Literal["window", "image"] = "window") -> ProbeReport:
    """Table 6: probe `model` (with the Extractor) and a model without it (`refocus="feedback"`).

    Args:
        without_extractor: a model trained with `refocus="feedback"` (the paper's "w/o Extractor"). None switches
            `model` itself to feedback refocusing for the second row (same weights, evaluation-time ablation).
    """
    rows = [probe_model(model, processor, samples, "with Extractor", n_pairs, n_positive, seed, batch_size,
                        vision_anchor)]
    if without_extractor is not None:
        if without_extractor.config.refocus != "feedback":
            logger.warning("the 'w/o Extractor' model has refocus=%r, not 'feedback'", without_extractor.config.refocus)
        rows.append(probe_model(without_extractor, processor, samples, "w/o Extractor", n_pairs, n_positive, seed,
                                batch_size, vision_anchor))
    else:
        with refocus_mode(model, "feedback"):
            rows.append(probe_model(model, processor, samples, "w/o Extractor (same weights, feedback)", n_pairs,
                                    n_positive, seed, batch_size, vision_anchor))
    return ProbeReport(models=rows, vision_anchor=vision_anchor, seed=seed)


def probe_markdown(report: ProbeReport) -> str:
    """Table 6's layout: module × classifier → latent–vision and latent–text accuracy (%)."""
    rows = []
    for probe in report.models:
        rows.append([probe.label, "SVM", 100 * probe.vision.svm_accuracy, 100 * probe.text.svm_accuracy])
        rows.append([probe.label, "MLP", 100 * probe.vision.mlp_accuracy, 100 * probe.text.mlp_accuracy])
    counts = report.models[0].pair_counts if report.models else {}
    return "\n".join([
        "# Probing (Table 6)", "",
        f"Pairs: {', '.join(f'{k} {v}' for k, v in counts.items())}; 70/30 split stratified by kind; vision anchor: "
        f"{report.vision_anchor}; seed {report.seed}.", "",
        markdown_table(["module", "classifier", "vision acc. (%)", "text acc. (%)"], rows, digits=1),
    ])


def write_probe(report: ProbeReport, out_dir: str | Path) -> dict[str, Path]:
    """Write `probe.json` (scores per model, anchor, classifier and pair kind) and `probe.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "probe.json", "markdown": out / "probe.md"}
    payload = {"vision_anchor": report.vision_anchor, "seed": report.seed,
               "models": [asdict(probe) for probe in report.models]}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(probe_markdown(report), encoding="utf-8")
    return paths
