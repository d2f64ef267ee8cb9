"""What a stage trains: module groups by parameter-name prefix, freezing, and AdamW parameter groups.

| group            | parameters                                            |
|------------------|-------------------------------------------------------|
| vision_tower     | `vision_tower.*`                                      |
| projector        | `projector.*`                                         |
| language_model   | `language_model.*`                                    |
| extractor        | `extractor.*`, `state_layer_logits` (the layer mix)   |
| semantic_losses  | `semantic_losses.*` (alignment heads, U-Net)          |

Stage I trains the projector; stage II the extractor and semantic_losses; stages III and IV everything but the
vision tower. A frozen parameter has `requires_grad=False` and is not in the optimizer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from torch import nn

from lare.training.config import MODULE_GROUPS

logger = logging.getLogger(__name__)

_GROUP_PREFIXES: dict[str, tuple[str, ...]] = {
    "vision_tower": ("vision_tower.",),
    "projector": ("projector.",),
    "language_model": ("language_model.",),
    "extractor": ("extractor.", "state_layer_logits"),
    "semantic_losses": ("semantic_losses.",),
}


def module_group(parameter_name: str) -> str:
    """The module group a parameter belongs to; an unmapped parameter is an error (so nothing trains by accident)."""
    for group, prefixes in _GROUP_PREFIXES.items():
        if any(parameter_name == p or parameter_name.startswith(p) for p in prefixes):
            return group
    raise ValueError(f"parameter {parameter_name!r} belongs to no module group ({', '.join(MODULE_GROUPS)}); "
                     "add its prefix to lare.training.stages")


def parameters_by_group(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Every (name, parameter) of the model, keyed by module group (tied parameters appear once)."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {group: [] for group in MODULE_GROUPS}
    for name, parameter in model.named_parameters():
        groups[module_group(name)].append((name, parameter))
    return groups


def set_trainable(model: nn.Module, groups: Iterable[str]) -> dict[str, int]:
    """Unfreeze exactly the named groups (`requires_grad`), freeze the rest; return trainable counts per group."""
    groups = set(groups)
    unknown = groups - set(MODULE_GROUPS)
    if unknown:
        raise ValueError(f"unknown module groups {sorted(unknown)} (known: {', '.join(MODULE_GROUPS)})")
    counts = {}
    for group, named in parameters_by_group(model).items():
        trainable = group in groups
        for _, parameter in named:
            parameter.requires_grad_(trainable)
        counts[group] = sum(p.numel() for _, p in named) if trainable else 0
    logger.info("trainable parameters: %s", {g: n for g, n in counts.items() if n} or "none")
    return counts


def _no_decay(name: str, parameter: nn.Parameter) -> bool:
    # Weight decay shrinks weights toward 0; for biases, norm gains and the layer-mix logits that is a bias
    # toward a degenerate value (gain 0, uniform mix), not regularisation.
    return parameter.ndim < 2 or name.endswith(".bias")


def optimizer_groups(model: nn.Module, lr_by_group: dict[str, float], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: per module group in `lr_by_group`, one with weight decay and one without.

    Each group dict carries `name` ("projector", "projector/no_decay", …) for logging its learning rate.
    Only parameters with `requires_grad` are included.
    """
    param_groups = []
    by_group = parameters_by_group(model)
    for group in MODULE_GROUPS:
        if group not in lr_by_group:
            continue
        named = [(n, p) for n, p in by_group[group] if p.requires_grad]
        if not named:
            raise ValueError(f"module group {group!r} has a learning rate but no trainable parameters")
        decay = [p for n, p in named if not _no_decay(n, p)]
        no_decay = [p for n, p in named if _no_decay(n, p)]
        if decay:
            param_groups.append({"name": group, "params": decay, "lr": lr_by_group[group],
                                 "weight_decay": weight_decay})
        if no_decay:
            param_groups.append({"name": f"{group}/no_decay", "params": no_decay, "lr": lr_by_group[group],
                                 "weight_decay": 0.0})
    return param_groups
