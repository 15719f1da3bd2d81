"""Benchmark variants named `base+SETTING=VALUE+...@LEARNING_RATE` (`lora+lora_top_layers=8@5e-4`):
compared side by side in one invocation, each a base setting with overrides."""

from __future__ import annotations


def parse_variant(spec: str) -> tuple[str, list[tuple[str, str]], str]:
    """`ours-shared+lora_top_layers=16@2e-4` -> ("ours-shared", [("lora_top_layers", "16")], "2e-4")."""
    spec, _, learning_rate = spec.partition("@")
    base, *overrides = spec.split("+")
    return base, [(key, value) for key, _, value in (o.partition("=") for o in overrides)], learning_rate


def cli_args(overrides: list[tuple[str, str]], learning_rate: str) -> list[str]:
    """The overrides (then the learning rate, if any) as command-line flags of a stage."""
    args = [arg for key, value in overrides for arg in (f"--{key}", value)]
    return args + (["--learning_rate", learning_rate] if learning_rate else [])
