"""The demo report: Table-1-style comparison, latent ablations, refocus heatmaps, refocus precision, loss curves."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from lare.analysis.markdown import markdown_table
from lare.demo.config import LARE_STAGES, DemoConfig
from lare.demo.run import TYPE_LEVELS, type_level

logger = logging.getLogger(__name__)

LOSS_TERMS = ("vision", "ntp", "align", "image", "text", "ground")
FAMILY_ORDER = ("mmbench", "mmstar", "mmvp", "pope", "scienceqa")
RUN_ORDER = ("stage0", "stage1", "lare_stage2", "lare_stage3", "lare_stage4", "cot", "direct")


def comparison_table(result: Any) -> str:
    """Method × (overall accuracy, # tokens, accuracy per family), accuracies in percent."""
    header = ["method", "accuracy (%)", "# tokens (correct)"] + [f"{f} (%)" for f in FAMILY_ORDER]
    rows = []
    for name in ("direct", "cot", "lare"):
        score = result.methods[name]
        rows.append([_method_label(name), 100 * score.accuracy, score.tokens_correct]
                    + [100 * score.by_family[f]["accuracy"] for f in FAMILY_ORDER])
    chance = result.extras.get("chance")
    if chance is not None:
        rows.append(["(chance)", 100 * chance["accuracy"], None]
                    + [100 * chance["by_family"][f] for f in FAMILY_ORDER])
    return markdown_table(header, rows, digits=1)


def tokens_table(result: Any) -> str:
    """# tokens (mean generated tokens over correct answers) per family."""
    header = ["method"] + [f"{f} # tokens" for f in FAMILY_ORDER]
    rows = [[_method_label(name)] + [result.methods[name].by_family[f]["tokens_correct"] for f in FAMILY_ORDER]
            for name in ("direct", "cot", "lare")]
    return markdown_table(header, rows, digits=1)


def type_table(result: Any) -> str:
    """Accuracy per question type within the families whose scorer labels types (%); "" when none does."""
    methods = ("direct", "cot", "lare")
    windows = (result.extras.get("refocus_precision") or {}).get("per_type") or {}
    rows = []
    for family in FAMILY_ORDER:
        types = result.methods["lare"].by_family[family].get("by_type") or {}
        for name in types:
            accuracies = [100 * result.methods[m].by_family[family]["by_type"][name] for m in methods]
            precision = windows.get(family, {}).get(name, {}).get("precision")
            rows.append([family, name.replace("_", " "), *accuracies, accuracies[2] - accuracies[1],
                         None if precision is None else 100 * precision])
    if not rows:
        return ""
    header = ["family", "question type", *(f"{_method_label(m)} (%)" for m in methods), "LaRe − CoT (points)",
              "LaRe windows on evidence (%)"]
    return markdown_table(header, rows, digits=1)


def ablation_table(result: Any) -> str:
    """LaRe with its own latents vs zeroed and shuffled latents."""
    base = result.methods["lare"]
    rows = [["LaRe (own latents)", 100 * base.accuracy, base.tokens_correct, 0.0]]
    for name, score in result.latent_ablations.items():
        rows.append([f"LaRe, {name} latents", 100 * score.accuracy, score.tokens_correct,
                     100 * (score.accuracy - base.accuracy)])
    return markdown_table(["latents", "accuracy (%)", "# tokens (correct)", "Δ accuracy (points)"], rows, digits=1)


def verdict(result: Any) -> list[str]:
    """Plain statements of whether the demo met its targets."""
    lare, cot = result.methods["lare"], result.methods["cot"]
    lines = []
    relation = "≥" if lare.accuracy >= cot.accuracy else "<"
    lines.append(f"- LaRe accuracy {100 * lare.accuracy:.1f}% {relation} standard CoT {100 * cot.accuracy:.1f}%"
                 + ("" if relation == "≥" else ": LaRe does **not** beat CoT in this run") + ".")
    if lare.tokens_correct is not None and cot.tokens_correct:
        ratio = lare.tokens_correct / cot.tokens_correct
        met = "meets" if ratio <= 0.85 else "misses"
        lines.append(f"- LaRe uses {ratio:.2f}× CoT's tokens per correct answer ({met} the ≤ 0.85× target).")
    chance = result.extras.get("chance")
    if chance is not None:
        margins = {name: 100 * (score.accuracy - chance["accuracy"]) for name, score in result.methods.items()}
        best = max(margins.values())
        note = (" — every method is within 5 points of guessing, so this run does not separate them"
                if best < 5 else "")
        lines.append(f"- Accuracy above chance ({100 * chance['accuracy']:.1f}%): "
                     + ", ".join(f"{_method_label(n)} {m:+.1f}" for n, m in margins.items()) + f" points{note}.")
    zero = result.latent_ablations.get("zero")
    if zero is not None:
        drop = 100 * (lare.accuracy - zero.accuracy)
        lines.append(f"- Zeroing the latents changes LaRe's accuracy by {100 * (zero.accuracy - lare.accuracy):+.1f} "
                     "points" + (" (the answers depend on the latents)." if drop > 0 else
                        ": the latents are **not** shown to matter in this run."))
    shuffle = result.latent_ablations.get("shuffle")
    if shuffle is not None:
        drop = 100 * (lare.accuracy - shuffle.accuracy)
        # Two binomial standard errors of LaRe's accuracy: a smaller change is not told apart from none.
        noise = 200 * (lare.accuracy * (1 - lare.accuracy) / max(lare.n, 1)) ** 0.5
        lines.append(f"- Shuffling the latents across samples changes it by "
                     f"{100 * (shuffle.accuracy - lare.accuracy):+.1f} points"
                     + (" (the answers use what each sample's own latents hold)." if drop > noise else
                        f": within two standard errors ({noise:.1f} points) of no change, so the answers are "
                        "**not** shown to use what each sample's own latents hold."))
    use = result.extras.get("latent_use")
    if use is not None:
        lines.append(f"- Teacher-forced, the rationale prefix the latents replace costs {use['prefix_ce']['own']:.3f} "
                     f"nats/token decoded from its own latents and {use['prefix_ce']['shuffled']:.3f} from another "
                     f"sample's; the text after `<eot>` costs {use['target_ce']['own']:.3f} and "
                     f"{use['target_ce']['shuffled']:.3f}.")
    return lines


def _method_label(name: str) -> str:
    return {"lare": "LaRe", "cot": "standard CoT", "direct": "direct answer"}[name]


def plot_curves(metrics_paths: dict[str, Path], out_path: Path) -> Path:
    """One panel per training run, every active loss term against the step."""
    from lare.analysis.figures import pyplot, save_figure

    plt = pyplot()

    from lare.training.metrics_log import read_metrics

    runs = [name for name in RUN_ORDER if name in metrics_paths]
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 2.8), squeeze=False)
    for ax, name in zip(axes[0], runs):
        rows = [row for row in read_metrics(metrics_paths[name]) if not row.get("skipped", False)]
        for term in LOSS_TERMS:
            points = [(row["step"], row[term]) for row in rows if term in row]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=term, linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    return save_figure(fig, out_path)


def plot_refocus_examples(model: Any, processor: Any, samples: list[Any], n: int, out_path: Path) -> Path:
    """The first test question of `n` families, asked as the harness asks LaRe, with each step's heatmap."""
    from lare.analysis.heatmaps import RefocusTrace, plot_refocus_grid

    traces = []
    for family in FAMILY_ORDER[:n]:
        sample = next(s for s in samples if s.family == family)
        batch = processor(images=[sample.image], text=[sample.question], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**batch.to(model.device), max_new_tokens=48, do_sample=False,
                                 eos_token_id=processor.tokenizer.eos_token_id, return_dict_in_generate=True)
        text = processor.batch_decode(out.sequences, skip_special_tokens=True)[0].strip()
        steps = int(out.latent_steps_taken[0])
        traces.append(RefocusTrace(
            image=sample.image, saliency=out.saliency[0].cpu(), windows=out.windows[0].cpu(),
            step_mask=torch.arange(out.saliency.shape[1]) < steps, title=f"{family} (answer {sample.answer})",
            text=f"Q: {sample.short_question}\nA: {text}"))
    return plot_refocus_grid(traces, out_path)


def write_report(result: Any, config: DemoConfig, synthetic: Any, model: Any, processor: Any) -> Path:
    """Write report.md, refocus.png and curves.png into the demo's output directory."""
    out = config.out_dir
    plot_curves(result.metrics_paths, out / "curves.png")
    samples = lare_test_samples(synthetic)
    plot_refocus_examples(model, processor, samples, config.heatmap_samples, out / "refocus.png")
    precision_md = _refocus_precision(model, processor, samples, config, result, synthetic)
    latent_use_md = _latent_use(model, processor, synthetic, config, result)
    lines = [
        "# LaRe demo: latent refocusing vs standard CoT vs direct answer",
        "",
        f"Synthetic benchmark, seed {result.seed}"
        + (f" (runs after stage I: seed {result.finetune_seed})" if result.finetune_seed != result.seed else "")
        + f": {config.n_train} training and {result.n_test} test questions "
        f"(5 families). Tiny model from random init. Training steps (batch {config.batch_size}): shared stage 0 "
        f"(vision tower with {config.patch_size} px patches and projector aligned to the word embeddings of each "
        f"cell's content plus row and column codes, a stand-in for a pretrained CLIP) {config.vision_steps}; "
        f"shared stage I "
        f"{config.stage_steps['stage1']}; LaRe stages II–IV {config.stage_steps['stage2']} / "
        f"{config.stage_steps['stage3']} / {config.stage_steps['stage4']}; each baseline "
        f"{config.baseline_steps}. The latents replace in stages II / III / IV: "
        f"{' / '.join(config.latent_replaces[stage] for stage in LARE_STAGES)} "
        f"(\"none\": the whole rationale follows them). T = {config.latent_steps}, P = {config.prefix_tokens}, "
        f"λ = {config.align_weight} / {config.image_weight} / {config.text_weight}, window {config.window}×"
        f"{config.window} cells, saliency grounding {config.grounding_weight}"
        + (" with the training windows on each step's evidence box" if config.evidence_windows_in_training else "")
        + " (not in the paper: docs/demo-experiments.md). Wall time "
        f"{result.wall_s / 60:.1f} min.",
        "",
        "## Accuracy and tokens (official scoring of the exported test files)",
        "",
        "Every method is trained to end with \"The answer is X.\", X a multiple-choice option's text. Each "
        "benchmark family is scored by its official rule applied to that final statement, X turned into its "
        "option letter when it names exactly one option (`lare eval score --answer-extraction final_option`, "
        "VLMEvalKit's option-text matching). # tokens: mean generated tokens over correct answers. POPE accuracy "
        "is over all its questions.",
        "",
        comparison_table(result),
        "",
        tokens_table(result),
        "",
        *verdict(result),
        "",
    ]
    types_md = type_table(result)
    if types_md:
        lines += ["## Accuracy by question type", "",
                  "The families whose official files label each question's type, scored as in the table above; "
                  "the last column is the share of LaRe's latent steps whose window covers an evidence box (see "
                  "Refocus precision).",
                  "", types_md, ""]
    lines += [
        "## Latent ablation",
        "",
        ablation_table(result),
        "",
    ]
    if precision_md:
        lines += ["## Refocus precision", "", precision_md, ""]
    lines += ["## Latent use", "",
              "Teacher-forced on the test questions, with each sample's own latents and with another sample's: "
              "the rationale prefix that the latents replace, decoded from the latents alone (Eq. 8), and the "
              "text after `<eot>` in the full model. A prefix far cheaper with its own latents means the latents "
              "hold the sample's reasoning; a target that costs about the same either way means the answer text "
              "hardly reads them.", "", latent_use_md, ""]
    lines += ["## Figures", "", "- `refocus.png`: per-step saliency and chosen window for test samples.",
              "- `curves.png`: training losses of every run.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _refocus_precision(model: Any, processor: Any, samples: list[Any], config: DemoConfig, result: Any,
                       synthetic: Any) -> str:
    """Fraction of latent steps whose window covers an evidence box, vs random windows (markdown)."""
    from lare.analysis.refocus_precision import measure_refocus_precision, refocus_precision_markdown

    with torch.inference_mode():
        report = measure_refocus_precision(model, processor, samples, batch_size=config.eval_batch_size)
    summary = report.to_json()
    summary["per_type"] = precision_by_type(summary.pop("per_sample"), question_types(synthetic.test_path))
    result.extras["refocus_precision"] = summary
    # The analysis renders its own title; the demo report has its own section heading.
    return refocus_precision_markdown(report).split("\n", 2)[2]


def question_types(records_path: str | Path) -> dict[str, tuple[str, str]]:
    """Record id → (family, question type) for the families whose records split into several types.

    The type is read at the family's `type_level`, as `lare.demo.run.accuracy_by_type` reports it (the
    benchmarks' files carry the same labels as the records).
    """
    records = json.loads(Path(records_path).read_text(encoding="utf-8"))
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("family"):
            by_family[record["family"]].append(record)
    types: dict[str, tuple[str, str]] = {}
    for family, members in by_family.items():
        level = type_level({name: {r[name] for r in members if r.get(name)} for name in TYPE_LEVELS})
        if level:
            types.update({record["id"]: (family, record[level]) for record in members if record.get(level)})
    return types


def precision_by_type(per_sample: list[dict[str, Any]], types: dict[str, tuple[str, str]]
                      ) -> dict[str, dict[str, dict[str, float]]]:
    """{family: {type: {"precision", "n_steps"}}}: the share of scored latent steps whose window covers evidence."""
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for sample in per_sample:
        if sample["id"] in types:
            hits[types[sample["id"]]].extend(sample["hits"])
    per_type: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (family, name), values in sorted(hits.items()):
        if values:
            per_type[family][name] = {"precision": sum(values) / len(values), "n_steps": len(values)}
    return dict(per_type)


def _latent_use(model: Any, processor: Any, synthetic: Any, config: DemoConfig, result: Any) -> str:
    """Own vs another sample's latents, teacher-forced on the test split in LaRe's training format (markdown)."""
    from lare.analysis.latent_use import latent_use_batches, latent_use_markdown, measure_latent_use
    from lare.data.dataset import LaReDataset
    from lare.data.records import load_records
    from lare.demo.prompted_records import load_joined, write_prompted_records

    # The test questions in LaRe's training format (prompt as the harness asks, answers by option text).
    path = write_prompted_records(load_joined(synthetic.exports, synthetic.test_path), "lare",
                                  config.out_dir / "records" / "test_lare.json")
    records, _ = load_records(path, synthetic.image_root, on_bad="raise")
    dataset = LaReDataset(records, synthetic.image_root)
    batches = latent_use_batches([dataset[i] for i in range(len(dataset))], processor,
                                 model.config.prefix_tokens, config.eval_batch_size)
    with torch.inference_mode():
        report = measure_latent_use(model, batches)
    result.extras["latent_use"] = report.to_dict()
    return latent_use_markdown(report)


def lare_test_samples(synthetic: Any) -> list[Any]:
    """The test questions as `AnalysisSample`s, worded as the harness asks LaRe (with their evidence boxes)."""
    from lare.analysis.samples import AnalysisSample
    from lare.data.images import open_image
    from lare.demo.prompted_records import load_joined
    from lare.evaluation.benchmarks import get_benchmark
    from lare.evaluation.methods import get_method

    lare = get_method("lare")
    samples = []
    for family, pairs in load_joined(synthetic.exports, synthetic.test_path).items():
        benchmark = get_benchmark(family)
        for item, record in pairs:
            samples.append(AnalysisSample(
                id=record["id"], image=open_image(record["image"], synthetic.image_root),
                question=lare.prompt(benchmark, item), target=record["conversations"][1]["value"],
                answer=record["answer"], options=record.get("options"), rationale=record.get("rationale"),
                family=family, boxes=record.get("boxes")))
    return samples
