"""Cheaper weights for sampling only: an int8 dynamic-quantised copy of a causal LM.

On this project's reference CPU (2-core AMD EPYC, oneDNN) a decode step of the 135M model is bound by
fp32 matrix-vector work; int8 dynamic weights (per-row int8 weights, activations quantised on the fly)
sample 8 x 32 tokens 2.7x faster, where bf16 does not help (benchmarks/RESULTS.md, 2026-12-02). The
copy draws from a slightly different distribution than the model it came from: use it where answers
are candidates to be judged (the labeling pool), or where log-probs are then recomputed in fp32.
"""

from __future__ import annotations

import copy
import warnings

SAMPLING_WEIGHTS = ("fp32", "int8")


def check_sampling_weights(name: str) -> None:
    if name not in SAMPLING_WEIGHTS:
        from ranktune.errors import InputError

        raise InputError(f"must be one of {', '.join(SAMPLING_WEIGHTS)}, got '{name}'", field="sampling_weights")


def int8_copy(model):
    """A copy of `model` (left untouched) whose every nn.Linear holds int8 weights, for inference on the CPU."""
    import torch

    clone = copy.deepcopy(model).to("cpu").float().eval()
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice: it is still the CPU int8 path
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(clone, {torch.nn.Linear}, dtype=torch.qint8)


def sampling_model(model, weights: str):
    """The model to sample from for `weights` (fp32: the model itself)."""
    check_sampling_weights(weights)
    return int8_copy(model) if weights == "int8" else model
