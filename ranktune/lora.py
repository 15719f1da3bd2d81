"""LoRA on the top layers only: shared by the reward stage and PPO.

With adapters on the last N transformer layers, nothing below them trains, so every backward pass
stops at the lowest adapted layer: less arithmetic and no activations kept for the frozen layers.
"""

from __future__ import annotations

import copy
import re

from torch import nn

from ranktune.errors import InputError


def num_layers(model: nn.Module) -> int:
    config = model.config
    return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer")


def top_layers_adapter(peft_config, model: nn.Module, top_layers: int, task_type: str | None = None):
    """A copy of `peft_config` whose adapters sit on the last `top_layers` transformer layers of `model`
    (0: every layer, the config as it is). `task_type`, if given, replaces the config's."""
    config = copy.deepcopy(peft_config)
    if task_type is not None:
        config.task_type = task_type
    if top_layers < 0:
        raise InputError(f"must be 0 (every layer) or a number of layers, got {top_layers}", field="lora_top_layers")
    n = num_layers(model)
    if 0 < top_layers < n:
        # peft's layers_to_transform is not applied to "all-linear", so name the modules outright
        config.target_modules = linear_modules(model, config.target_modules, range(n - top_layers, n))
    return config


def linear_modules(model: nn.Module, targets, layers: range) -> list[str]:
    """Full names of the linear modules in `layers` that `targets` ("all-linear" or names) selects."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    wanted = None if targets == "all-linear" else {targets} if isinstance(targets, str) else set(targets)
    names = []
    for name, module in model.named_modules():
        index = re.search(r"\.(\d+)\.", name)
        if (isinstance(module, (nn.Linear, Conv1D)) and index and int(index.group(1)) in layers
                and (wanted is None or name.rsplit(".", 1)[-1] in wanted)):
            names.append(name)
    if not names:
        raise InputError(f"no linear module of the top {len(layers)} layers matches {targets}",
                         field="lora_target_modules")
    return names
