"""LaRe as an lmms-eval model: `lmms-eval --model lare --model_args pretrained=DIR,method=lare --tasks mmstar`.

Written against lmms-eval 0.7.3's model interface (`lmms_eval.api.model.lmms`, `lmms_eval.api.instance`). The
model reports each answer's output token count through `GenerationResult.token_counts`, so lmms-eval can compute
its token metrics. lmms-eval loads plugin models from the `lmms_eval.models` entry-point group, where it expects a
`ModelManifest` (or a callable returning one): `lmms_eval_manifest` is that callable.

This module imports lmms-eval at import time (the class must subclass its base class); nothing else in `lare`
imports this module, so lmms-eval stays an optional dependency.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

try:
    from lmms_eval.api.instance import GenerationResult, TokenCounts
    from lmms_eval.api.model import lmms
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("lare.integrations.lmms_eval needs lmms-eval: `pip install lmms-eval`") from error

from lare.evaluation.generation import generate_answers
from lare.evaluation.methods import get_method

logger = logging.getLogger(__name__)

MODEL_ID = "lare"
CLASS_PATH = "lare.integrations.lmms_eval.LaReLMMS"
# Appended to lmms-eval's own prompt for method=cot (its task prompts ask for a direct answer).
_COT_SUFFIX = "\nThink step by step before giving the final answer."


def lmms_eval_manifest() -> Any:
    """The `ModelManifest` lmms-eval's registry expects from an `lmms_eval.models` entry point."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


class LaReLMMS(lmms):
    """lmms-eval wrapper around `LaReForConditionalGeneration` (a "simple" model: lmms-eval builds the prompt).

    Args (lmms-eval `--model_args`, all strings on the command line):
        pretrained: model directory written by `save_pretrained` (model and processor).
        method: "lare" (configured latent steps), "direct" (no latents) or "cot" (no latents, reasoning asked).
        latent_ablation: "none", "zero", "shuffle" or "noise".
        batch_size: requests per `generate` call.
        max_new_tokens: default budget when a task's generation kwargs give none.
        device: torch device; default cuda when available.
    """

    is_simple = True

    def __init__(self, pretrained: str, method: str = "lare", latent_ablation: str = "none", batch_size: int | str = 1,
                 max_new_tokens: int | str | None = None, device: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        from lare import LaReForConditionalGeneration, LaReProcessor

        if kwargs:
            logger.warning("LaReLMMS ignores unknown model_args: %s", sorted(kwargs))
        self.method = get_method(method)
        self.latent_ablation = latent_ablation
        self.batch_size_per_call = int(batch_size)
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens is not None else self.method.default_max_new_tokens
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = LaReForConditionalGeneration.from_pretrained(pretrained).to(self.device).eval()
        self.processor = LaReProcessor.from_pretrained(pretrained)
        self.pretrained = pretrained
        self._generator = torch.Generator(device=self.device).manual_seed(0)

    def generate_until(self, requests: list[Any]) -> list[Any]:
        """Answer each request: `args` = (context, gen_kwargs, doc_to_visual, doc_id, task, split).

        Returns:
            One `GenerationResult(text, TokenCounts(input_tokens, output_tokens))` per request, in request order;
            the text is cut at the first of the task's `until` strings.
        """
        results: list[Any] = [None] * len(requests)
        # Requests with and without an image cannot share a batch; neither can different generation settings.
        groups: dict[tuple, list[int]] = {}
        prepared = []
        for position, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            visuals = [v for v in doc_to_visual(self.task_dict[task][split][doc_id]) if v is not None]
            if len(visuals) > 1:
                logger.warning("%s doc %s has %d images; LaRe reads the first", task, doc_id, len(visuals))
            image = visuals[0].convert("RGB") if visuals else None
            prompt = context + (_COT_SUFFIX if self.method.name == "cot" else "")
            settings = self._settings(dict(gen_kwargs))
            prepared.append((prompt, image, settings))
            key = (image is not None, tuple(sorted((k, str(v)) for k, v in settings.items() if k != "until")))
            groups.setdefault(key, []).append(position)
        for (has_image, _), positions in groups.items():
            for start in range(0, len(positions), self.batch_size_per_call):
                chunk = positions[start:start + self.batch_size_per_call]
                settings = prepared[chunk[0]][2]
                images = [prepared[i][1] for i in chunk] if has_image else None
                answers = generate_answers(
                    self.model, self.processor, images, [prepared[i][0] for i in chunk],
                    max_new_tokens=settings["max_new_tokens"], latent_steps=self.method.latent_steps,
                    latent_ablation=self.latent_ablation, generator=self._generator,
                    do_sample=settings["do_sample"], **settings["sampling"],
                )
                for i, (text, n_tokens) in zip(chunk, answers):
                    results[i] = GenerationResult(text=_cut(text, settings["until"]),
                                                  token_counts=TokenCounts(output_tokens=n_tokens))
        return results

    def _settings(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        until = gen_kwargs.pop("until", [])
        until = [until] if isinstance(until, str) else list(until or [])
        temperature = float(gen_kwargs.pop("temperature", 0) or 0)
        do_sample = bool(gen_kwargs.pop("do_sample", False)) and temperature > 0
        sampling = {"temperature": temperature} if do_sample else {}
        if do_sample and "top_p" in gen_kwargs:
            sampling["top_p"] = float(gen_kwargs["top_p"])
        return {"until": until, "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
                "do_sample": do_sample, "sampling": sampling}

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError("LaReLMMS answers generate_until tasks only")

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise NotImplementedError("LaReLMMS answers single-round generate_until tasks only")


def _cut(text: str, until: list[str]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text
