"""Frozen-layer cache: run the frozen lower layers of a network once per rollout, not once per PPO epoch.

With LoRA on the top N layers only (`lora_top_layers`), layers 0..k-1 of the policy and of the value
model have nothing to train: for one rollout batch their output — the hidden states entering layer k,
(B, T, D) — is the same in every PPO epoch. `hidden_entering` computes it once; `resume_at` then runs
layers k.. (+ final norm + head) from it, by cutting the backbone's decoder `ModuleList` to its top
slice for the block and passing the cached states as `inputs_embeds` (with the same attention mask
and position ids as the full forward, so left padding is handled the same way).

That is only right for architectures whose forward feeds `inputs_embeds` to the first layer as they
are (Llama/SmolLM2, Mistral, Qwen2; not GPT-2, which adds position embeddings, nor Gemma, which
scales them): `enable` checks on a probe batch that the split forward reproduces the full one before
the trainer uses it, and says why not otherwise. Models with mixed layer types (Qwen2/3, SmolLM3,
Gemma2/3) pick layer i's attention mask (and rotary type) as `config.layer_types[i]`, counting from
the first layer that runs: per-layer config lists are cut with the stack, and the probe is longer
than the sliding window, so a shift would show.
"""

from __future__ import annotations

import contextlib
import copy
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4  # max abs difference of logits and values, split vs full forward


def decoder_layers(backbone: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The backbone's stack of decoder layers (`layers` for Llama, `h` for GPT-2) and its attribute name."""
    n = getattr(backbone.config, "num_hidden_layers", None) or getattr(backbone.config, "n_layer", None)
    for name, child in backbone.named_children():
        if isinstance(child, nn.ModuleList) and len(child) == n:
            return name, child
    return None


def first_trained_layer(backbone: nn.Module) -> int:
    """k: the first decoder layer with a trainable parameter; 0 when nothing below the stack can be cached
    (no layer stack found, trainable embeddings, or every layer trains)."""
    found = decoder_layers(backbone)
    embeddings = backbone.get_input_embeddings()
    if found is None or any(p.requires_grad for p in embeddings.parameters()):
        return 0
    layers = found[1]
    return next((i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())), 0)


class _Reached(Exception):
    """Raised by the hook on layer k: the forward stops there."""


@torch.no_grad()
def hidden_entering(backbone: nn.Module, k: int, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    position_ids: torch.Tensor) -> torch.Tensor:
    """The hidden states (B, T, D) entering decoder layer k: the backbone runs layers 0..k-1 only."""
    _, layers = decoder_layers(backbone)
    captured = []

    def stop(module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])
        raise _Reached

    handle = layers[k].register_forward_pre_hook(stop, with_kwargs=True)
    try:
        backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    except _Reached:
        pass
    finally:
        handle.remove()
    return captured[0]


@contextlib.contextmanager
def resume_at(backbone: nn.Module, k: int | None, input_ids: torch.Tensor, hidden: torch.Tensor | None):
    """Yields the inputs of a forward through the model around `backbone`: the token ids (B, T) for the whole
    stack, or, given the cached states (B, T, D) entering layer k, those as `inputs_embeds` while the
    backbone's layer stack is cut to layers k.. for the block."""
    if hidden is None:
        yield {"input_ids": input_ids}
        return
    name, layers = decoder_layers(backbone)
    config = backbone.config
    setattr(backbone, name, nn.ModuleList(list(layers)[k:]))  # the same modules: gradients reach them
    backbone.config = _config_from(config, k, len(layers))
    try:
        yield {"inputs_embeds": hidden}
    finally:
        setattr(backbone, name, layers)
        backbone.config = config


def _config_from(config, k: int, n_layers: int):
    """A shallow copy of `config` whose per-layer lists (`layer_types`, ...) start at layer k, as the cut stack does."""
    per_layer = {key: value[k:] for key, value in vars(config).items()
                 if isinstance(value, (list, tuple)) and len(value) == n_layers and key != "architectures"}
    if not per_layer:
        return config
    cut = copy.copy(config)
    for key, value in per_layer.items():
        setattr(cut, key, value)
    return cut


def probe_length(config) -> int:
    """Tokens in the probe: past the sliding window (where there is one) so a misplaced mask shows."""
    window = getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None) or 0
    longest = getattr(config, "max_position_embeddings", None) or 1 << 30
    return max(12, min(int(window) + 8, longest))


@torch.no_grad()
def split_error(trained, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int) -> float:
    """Max abs difference of logits and values between the full and the split forward of `trained`
    (a `rlhf.models.PolicyAndValue` with `split` set) on one batch."""
    logits, values = trained(input_ids, attention_mask, context_length)
    frozen = trained.frozen_hidden(input_ids, attention_mask)
    split_logits, split_values = trained(input_ids, attention_mask, context_length, frozen=frozen)
    return max((logits.float() - split_logits.float()).abs().max().item(),
               (values.float() - split_values.float()).abs().max().item())


def enable(trained, pad_token_id: int | None = None) -> str | None:
    """Turn the cache on for `trained` (sets `trained.split`) if it is valid for it; returns why not otherwise.

    Valid when both networks (the policy, and the value model unless the value head is shared) have frozen
    layers below their first trained one, and, on a left-padded probe batch, the split forward gives the
    full forward's logits and values."""
    roles = {"policy": trained.policy} if trained.shared else {"policy": trained.policy, "value": trained.value}
    split = {role: first_trained_layer(trained.backbone(role)) for role in roles}
    if not all(split.values()):
        return "no frozen layers below the adapters (lora_top_layers covers every layer, or full fine-tuning)"
    device = next(trained.parameters()).device
    vocab = trained.policy.config.vocab_size
    length = max(probe_length(trained.backbone(role).config) for role in roles)
    probe = torch.randint(0, vocab, (2, length), generator=torch.Generator().manual_seed(0)).to(device)  # (B, T)
    mask = torch.ones_like(probe)
    mask[1, :4] = 0  # a left-padded prompt
    if pad_token_id is not None:
        probe[1, :4] = pad_token_id
    was_training = trained.training
    trained.split = split
    try:  # in both modes: the PPO epochs run in train mode, the rollout in eval mode
        error, mode = 0.0, "eval"
        for mode in ("eval", "train"):
            trained.train(mode == "train")
            error = split_error(trained, probe, mask, context_length=length // 2)
            if not error < TOLERANCE:
                break
    except Exception as exc:  # an architecture whose forward does not take inputs_embeds this way
        error, why = float("inf"), f"the split forward failed: {type(exc).__name__}: {exc}"
    else:
        why = (f"the split forward differs from the full one by {error:.2g} on a {length}-token probe batch "
               f"in {mode} mode")
    finally:
        trained.train(was_training)
    if error < TOLERANCE:
        return None
    trained.split = None
    return why
