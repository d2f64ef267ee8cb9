"""Minimal stand-ins for the parts of lmms-eval and VLMEvalKit that the adapters touch.

Neither harness is installed for the tests: lmms-eval 0.7.3 pulls in ~50 packages (torchvision, wandb, opencv,
sentence-transformers, ...) and VLMEvalKit is not on PyPI under its own name. These stand-ins copy the *interface*
the adapters depend on, checked against lmms-eval 0.7.3 and VLMEvalKit's `vlmeval/vlm/base.py`:

lmms-eval 0.7.3
  * `lmms_eval.api.model.lmms`: an ABC whose `__init__` sets `_rank`, `_world_size`, `task_dict`; abstract
    `loglikelihood`, `generate_until`, `generate_until_multi_round`; class attribute `is_simple = True`.
  * `lmms_eval.api.instance`: `Instance(request_type, arguments, idx, metadata={"task", "doc_id", "repeats"})` with
    `.args`; `GenerationResult(text, token_counts)`; `TokenCounts(input_tokens, output_tokens, reasoning_tokens)`.
  * `lmms_eval.models.registry_v2`: `ModelManifest(model_id, simple_class_path, chat_class_path, aliases)`, and the
    entry-point rule: the loaded object, called when callable, must be a `ModelManifest` (or an iterable of them);
    a manifest's class must subclass `lmms` with a matching `is_simple`.
  * The evaluator calls `generate_until(requests)` with `lm.task_dict[task][split][doc_id]` holding the docs that
    `doc_to_visual` turns into PIL images.
VLMEvalKit
  * `vlmeval.vlm.base.BaseModel`: `INTERLEAVE`, `allowed_types`; `generate(message, dataset)` turns a str or list of
    {"type", "value"} into the list-of-dicts form, checks the types and calls `generate_inner(message, dataset)`.
"""

from __future__ import annotations

import abc
import importlib
import sys
import types
from dataclasses import dataclass, field
from typing import Any


def install_lmms_eval(monkeypatch) -> types.SimpleNamespace:
    class lmms(abc.ABC):  # noqa: N801 - lmms-eval's spelling
        is_simple: bool = True

        def __init__(self) -> None:
            self._rank = 0
            self._world_size = 1
            self.task_dict: dict = {}

        @abc.abstractmethod
        def loglikelihood(self, requests): ...

        @abc.abstractmethod
        def generate_until(self, requests): ...

        @abc.abstractmethod
        def generate_until_multi_round(self, requests): ...

    @dataclass
    class TokenCounts:
        input_tokens: int | None = None
        output_tokens: int | None = None
        reasoning_tokens: int | None = None

    @dataclass
    class GenerationResult:
        text: str
        token_counts: TokenCounts | None = None

    @dataclass
    class Instance:
        request_type: str
        arguments: tuple
        idx: int
        metadata: dict = field(default_factory=dict)
        resps: list = field(default_factory=list)

        @property
        def args(self):
            return self.arguments if isinstance(self.arguments, tuple) else (self.arguments,)

    @dataclass(frozen=True)
    class ModelManifest:
        model_id: str
        simple_class_path: str | None = None
        chat_class_path: str | None = None
        aliases: tuple = ()

    def load_entry_point_payload(payload: Any) -> list:
        """registry_v2's `_coerce_payload_to_manifests`, then the class checks of `get_model_class`."""
        if callable(payload):
            payload = payload()
        manifests = [payload] if isinstance(payload, ModelManifest) else list(payload)
        if not all(isinstance(item, ModelManifest) for item in manifests):
            raise TypeError("Entry point payload must be ModelManifest or iterable of ModelManifest")
        classes = []
        for manifest in manifests:
            module, name = manifest.simple_class_path.rsplit(".", 1)
            cls = getattr(importlib.import_module(module), name)
            if not (isinstance(cls, type) and issubclass(cls, lmms) and cls.is_simple):
                raise TypeError(f"{manifest.simple_class_path} is not a simple lmms model")
            classes.append((manifest.model_id, cls))
        return classes

    modules = {
        "lmms_eval": types.ModuleType("lmms_eval"),
        "lmms_eval.api": types.ModuleType("lmms_eval.api"),
        "lmms_eval.api.model": types.ModuleType("lmms_eval.api.model"),
        "lmms_eval.api.instance": types.ModuleType("lmms_eval.api.instance"),
        "lmms_eval.models": types.ModuleType("lmms_eval.models"),
        "lmms_eval.models.registry_v2": types.ModuleType("lmms_eval.models.registry_v2"),
    }
    modules["lmms_eval.api.model"].lmms = lmms
    instance = modules["lmms_eval.api.instance"]
    instance.Instance, instance.GenerationResult, instance.TokenCounts = Instance, GenerationResult, TokenCounts
    modules["lmms_eval.models.registry_v2"].ModelManifest = ModelManifest
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "lare.integrations.lmms_eval", raising=False)
    return types.SimpleNamespace(lmms=lmms, Instance=Instance, GenerationResult=GenerationResult,
                                 ModelManifest=ModelManifest, load_entry_point_payload=load_entry_point_payload)


def install_vlmeval(monkeypatch) -> types.SimpleNamespace:
    class BaseModel:
        INTERLEAVE = False
        allowed_types = ["text", "image"]

        def __init__(self) -> None:
            pass

        def use_custom_prompt(self, dataset):
            return False

        @abc.abstractmethod
        def generate_inner(self, message, dataset=None): ...

        def generate(self, message, dataset=None):
            if isinstance(message, str):
                message = [dict(type="text", value=message)]
            assert isinstance(message, list) and all("type" in m and "value" in m for m in message)
            for item in message:
                assert item["type"] in self.allowed_types, f"Invalid input type: {item['type']}"
            return self.generate_inner(message, dataset)

    modules = {
        "vlmeval": types.ModuleType("vlmeval"),
        "vlmeval.vlm": types.ModuleType("vlmeval.vlm"),
        "vlmeval.vlm.base": types.ModuleType("vlmeval.vlm.base"),
    }
    modules["vlmeval.vlm.base"].BaseModel = BaseModel
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "lare.integrations.vlmevalkit", raising=False)
    return types.SimpleNamespace(BaseModel=BaseModel)
