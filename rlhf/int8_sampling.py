"""int8 sampling for PPO's rollout (`--sampling_weights int8`): the policy's frozen lower layers and its
output head run as int8 copies inside generate() only; the old log-probs are then recomputed by the
exact fp32 forward, so PPO's ratio still starts at 1.

Why: on a 2-core CPU sampling is a third of an update (benchmarks/RESULTS.md, 2026-12-02), each decode
step bound by fp32 matrix-vector work that int8 dynamic weights do ~2.7x faster (bf16 does not help).
Only what never trains is copied: the layers below the first LoRA layer (`lora_top_layers`) and the
head, so they are quantised once, at the start; the trained top layers run as they are, adapters and
all. The tokens then come from a slightly different distribution than the policy's own (as with any
separate inference engine); PPO scores them with the policy's fp32 log-probs.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ranktune.quantize import int8_copy
from rlhf.layer_cache import decoder_layers, first_trained_layer


class Int8Sampling:
    """int8 copies of a causal LM's frozen layers 0..k-1 and head; `swapped()` puts them in for a block."""

    def __init__(self, policy: nn.Module):
        inner = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        self.backbone = getattr(inner, inner.base_model_prefix)
        self.k = first_trained_layer(self.backbone)
        head = inner.get_output_embeddings()
        if not self.k or head is None or any(p.requires_grad for p in head.parameters()):
            raise ValueError("sampling_weights int8 needs frozen layers to quantise once: LoRA (use_peft) with "
                             "lora_top_layers below the model's layer count")
        self.inner, self.layers = inner, decoder_layers(self.backbone)[1]
        self.int8_layers = [int8_copy(self.layers[i]) for i in range(self.k)]
        self.int8_head = int8_copy(head)

    @contextlib.contextmanager
    def swapped(self):
        """The policy samples through the int8 copies for the block; its own modules are back after it."""
        own_layers = [self.layers[i] for i in range(self.k)]
        own_head = self.inner.get_output_embeddings()
        for i, layer in enumerate(self.int8_layers):
            self.layers[i] = layer
        self.inner.set_output_embeddings(self.int8_head)
        try:
            with torch.no_grad():
                yield
        finally:
            for i, layer in enumerate(own_layers):
                self.layers[i] = layer
            self.inner.set_output_embeddings(own_head)
