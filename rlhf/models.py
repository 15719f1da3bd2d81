"""The four roles PPO needs — policy, reference, value, reward — from as few weight copies as possible.

With LoRA (the default) there are two copies of base weights in memory:
- the SFT model carries the policy's adapter; with the adapter switched off it *is* the reference;
- the reward model carries the value function's adapter and a trainable copy of its score head;
  with the adapter off it *is* the reward model ("N implementation details": value initialised
  from the reward model).
`value_model: shared` puts a value head on the policy's own last hidden state instead (one
policy forward gives log-probs and values); `value_model: policy` is a separate value model on
a copy of the SFT model with a fresh head, what PPO takes when the reward model is served over
HTTP (no reward weights here to start from). Full fine-tuning keeps separate frozen copies.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ranktune.errors import InputError
from ranktune.lora import top_layers_adapter
from ranktune.models import load_causal_lm, load_sequence_classifier
from ranktune.sampling import position_ids_for
from rlhf.layer_cache import hidden_entering, resume_at
from trl.trainer.utils import disable_dropout_in_model

VALUE_MODELS = ("reward", "policy", "shared")


def _unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class PolicyAndValue(nn.Module):
    """Everything PPO trains, in one module: what the optimizer, checkpoints and accelerate see.

    `policy`: causal LM (peft-wrapped with LoRA). `value`: a sequence classifier read at every
    token (peft-wrapped over the reward model) or, when shared, `value_head` on the policy.
    `split`: with the frozen-layer cache on (`rlhf.layer_cache.enable`), the first trained layer of
    each network ({"policy": k, "value": k}); `frozen_hidden` gives the states entering those layers,
    and `forward(..., frozen=...)` runs only the layers from there.
    """

    def __init__(self, policy: nn.Module, value: nn.Module | None, value_head: nn.Module | None):
        super().__init__()
        self.policy, self.value, self.value_head = policy, value, value_head
        self.split: dict[str, int] | None = None

    def backbone(self, role: str) -> nn.Module:
        """The transformer body of the policy or of the value model (peft-wrapped or not)."""
        inner = _unwrapped(self.policy if role == "policy" else self.value)
        return getattr(inner, inner.base_model_prefix)

    def frozen_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The hidden states (B, T, D) entering each network's first trained layer (needs `split`)."""
        position_ids = position_ids_for(attention_mask)
        return {role: hidden_entering(self.backbone(role), k, input_ids, attention_mask, position_ids)
                for role, k in self.split.items()}

    @property
    def shared(self) -> bool:
        return self.value_head is not None

    # what TRL's unwrap_model_for_generation asks of the model it unwraps
    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.policy, "is_gradient_checkpointing", False))

    def gradient_checkpointing_disable(self):
        self.policy.gradient_checkpointing_disable()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int,
                with_values: bool = True, frozen: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for response positions (B, R, V) and values (B, R) for the states before each token.

        `input_ids` is query (left-padded, length `context_length`) + response (length R).
        Position t of the output predicts / values response token t. `frozen`: `frozen_hidden` of
        these sequences, so that only the layers above run.
        """
        position_ids = position_ids_for(attention_mask)
        R = input_ids.shape[1] - context_length
        frozen = frozen or {}
        # The LM head runs on the response positions only: on a 135M model it is a fifth of the compute.
        with resume_at(self.backbone("policy"), (self.split or {}).get("policy"), input_ids,
                       frozen.get("policy")) as inputs:
            out = self.policy(**inputs, attention_mask=attention_mask, position_ids=position_ids,
                              output_hidden_states=self.shared and with_values, use_cache=False,
                              logits_to_keep=R + 1)
        logits = out.logits[:, :-1]  # (B, R, V)
        values = None
        if with_values and self.shared:
            values = self.head_values(out.hidden_states[-1][:, context_length - 1:-1])  # (B, R)
        elif with_values:
            values = self.token_values(input_ids, attention_mask, context_length, frozen.get("value"))
        return logits, values

    def head_values(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values (B, R) from the shared head, given the policy's last hidden states (B, R, H)."""
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)

    def token_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_length: int,
                     frozen: torch.Tensor | None = None) -> torch.Tensor:
        """Values (B, R) from the separate value model, read at every response state (from the
        cached states `frozen` (B, T, D) entering its first trained layer, if given)."""
        backbone, head = self.backbone("value"), _unwrapped(self.value).score
        with resume_at(backbone, (self.split or {}).get("value"), input_ids, frozen) as inputs:
            hidden = backbone(**inputs, attention_mask=attention_mask, position_ids=position_ids_for(attention_mask),
                              use_cache=False).last_hidden_state
        return head(hidden[:, context_length - 1:-1]).squeeze(-1).float()


class Roles:
    """Frozen roles beside the trained module: `reference()` and `reward()` give a model to call."""

    def __init__(self, trained: PolicyAndValue, ref_model: nn.Module | None, reward_model: nn.Module | None,
                 reward_in_value: bool = True):
        self.trained, self.ref_model, self.reward_model = trained, ref_model, reward_model
        # without a frozen copy, the reward model is the value model with its adapter off, unless the
        # reward model is not here at all (served over HTTP: the trainer scores through its client)
        self.reward_in_value = reward_model is None and reward_in_value

    def frozen_parameters(self) -> list[nn.Parameter]:
        """The weights of the separate frozen copies (none with LoRA and a value model over the reward model)."""
        return [p for m in (self.ref_model, self.reward_model) if isinstance(m, nn.Module) for p in m.parameters()]

    @contextlib.contextmanager
    def reference(self):
        """The SFT policy: the adapter switched off, or the separate frozen copy."""
        if self.ref_model is not None:
            yield self.ref_model
        else:
            with self.trained.policy.disable_adapter():
                yield self.trained.policy

    @contextlib.contextmanager
    def reward(self):
        """The reward model: the value adapter switched off, or the separate frozen copy."""
        if self.reward_model is not None:
            yield self.reward_model
        elif self.reward_in_value:
            with self.trained.value.disable_adapter():
                yield self.trained.value
        else:
            raise RuntimeError("no local reward model: this run scores through a remote reward model")


def _no_dropout(model: nn.Module) -> None:
    """Every dropout off: the nn.Dropout modules, and the probabilities attention layers keep as plain floats
    (`attention_dropout` from the config, applied inside the attention kernel in train mode), which
    `disable_dropout_in_model` does not see."""
    disable_dropout_in_model(model)
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float):
                setattr(module, name, 0.0)


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def _same_vocabulary(a, b) -> bool:
    probe = "Hello, world! 123 <|im_start|> café"
    return len(a) == len(b) and a(probe)["input_ids"] == b(probe)["input_ids"]


def _adapter(peft_config, task_type: str, model: nn.Module, top_layers: int):
    """`peft_config` for one role, without dropout (PPO's ratios assume the same function at rollout and
    update), on the top `top_layers` layers only (0: every layer)."""
    config = top_layers_adapter(peft_config, model, top_layers, task_type)
    config.lora_dropout = 0.0
    return config


def _value_head_in_normalised_units(value: nn.Module, gain: float, bias: float,
                                    members: list[tuple[float, float]] | None = None) -> None:
    """Replace the value model's trainable head (W, b) by a biased one computing gain * (W h + b) + bias.

    The returns it learns are in the reward's normalised units (gain * raw + bias); a head copied as it
    is starts off by a constant (and a scale), which biases every advantage toward the answer's end
    while value clipping slows the correction (lm-human-preferences folds them the same way). Under
    LoRA only the trained copy changes: with the adapter off the reward model stays raw.

    An ensemble's head has one row per member, each with its own (gain, bias) in `members`: the value
    head starts as their mean, mean_m(g_m (W_m h + b_m) + c_m), one output. (The reward PPO optimises may
    be a more conservative aggregate; the value head learns the difference.)"""
    holder = _unwrapped(value).score
    adapted = hasattr(holder, "modules_to_save")
    head = holder.modules_to_save["default"] if adapted else holder
    m = head.out_features
    norms = members if members is not None else [(gain, bias)] * m
    if len(norms) != m:
        raise ValueError(f"{len(norms)} member normalisations for a reward head of {m} outputs")
    g = torch.tensor([x for x, _ in norms], dtype=head.weight.dtype, device=head.weight.device)  # (M,)
    c = torch.tensor([y for _, y in norms], dtype=head.weight.dtype, device=head.weight.device)  # (M,)
    folded = nn.Linear(head.in_features, 1, bias=True, device=head.weight.device, dtype=head.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_((g[:, None] * head.weight).mean(0, keepdim=True))  # (1, H)
        b = head.bias if head.bias is not None else torch.zeros_like(g)
        folded.bias.copy_((g * b + c).mean(0, keepdim=True))  # (1,)
    if adapted:
        holder.modules_to_save["default"] = folded
    else:
        _unwrapped(value).score = folded


def _fresh_value_model(policy_spec: str, tokenizer) -> nn.Module:
    """A one-output classifier on the SFT model's weights with a zero head: the value model when there is no
    reward model to start from. The SFT features already read the policy's own tokens (a served reward
    model may use another tokenizer), and a separate network keeps the value loss out of the policy's
    gradients, as with the default value model; a zero head starts every value at 0, the normalised
    reward's mean over SFT answers. The memory is the default's: two copies of base weights."""
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    with suppress_seqcls_warning():  # the new score head is the point
        value, _ = load_sequence_classifier(policy_spec, tokenizer=tokenizer)
    nn.init.zeros_(value.score.weight)
    return value


def build_models(policy_spec: str, reward_spec: str | None, peft_config, value_model: str = "reward",
                 lora_top_layers: int = 0, reward_normalization: tuple[float, float] = (1.0, 0.0),
                 member_normalization: list[tuple[float, float]] | None = None):
    """Load and wire up the roles. Returns (PolicyAndValue, Roles, tokenizer, reward tokenizer).
    `reward_normalization` (gain, bias): the units the value model starts in, the trainer's scores'.
    `reward_spec` None: the reward model is remote (no reward role here, no reward tokenizer).
    `member_normalization`: an ensemble reward model's per-member (gain, bias), None for one model."""
    if value_model not in VALUE_MODELS:
        raise InputError(f"must be one of {', '.join(VALUE_MODELS)}, got '{value_model}'", field="value_model")
    if reward_spec is None and value_model == "reward":
        raise InputError("a remote reward model has no weights here to start the value model from: set "
                         "value_model: policy (or shared)", field="value_model")
    policy, tokenizer = load_causal_lm(policy_spec)
    reward_model = reward_tokenizer = None
    if reward_spec is not None:
        reward_model, reward_tokenizer = load_sequence_classifier(reward_spec)
    if value_model == "reward" and not _same_vocabulary(tokenizer, reward_tokenizer):
        raise InputError("the reward model's tokenizer differs from the policy's, so it cannot read the policy's "
                         "tokens as a value model: set value_model: policy or shared", reward_spec,
                         field="value_model")
    for model in (policy, reward_model):
        if model is not None:
            _no_dropout(model)  # PPO's ratios assume the same function at rollout and update

    ref_model = None
    if peft_config is None:
        ref_model = _freeze(copy.deepcopy(policy))
    else:
        from peft import get_peft_model

        policy = get_peft_model(policy, _adapter(peft_config, "CAUSAL_LM", policy, lora_top_layers))

    value, value_head, frozen_reward = None, None, None
    if value_model == "shared":
        hidden = policy.config.hidden_size if hasattr(policy.config, "hidden_size") else policy.config.n_embd
        value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(value_head.weight)
        nn.init.zeros_(value_head.bias)
        frozen_reward = _freeze(reward_model) if reward_model is not None else None
    elif value_model == "policy":
        value = _fresh_value_model(policy_spec, tokenizer)
        _no_dropout(value)
        if peft_config is None:
            value.train()
        else:
            from peft import get_peft_model

            value = get_peft_model(value, _adapter(peft_config, "SEQ_CLS", value, lora_top_layers))
        frozen_reward = _freeze(reward_model) if reward_model is not None else None
        reward_normalization, member_normalization = (1.0, 0.0), None  # a fresh head: nothing to fold
    elif peft_config is None:
        value = copy.deepcopy(reward_model)
        value.train()
        frozen_reward = _freeze(reward_model)
    else:
        from peft import get_peft_model

        # SEQ_CLS: peft keeps the reward head and trains a copy of it as the value head
        value = get_peft_model(reward_model, _adapter(peft_config, "SEQ_CLS", reward_model, lora_top_layers))
    if value is not None:
        _value_head_in_normalised_units(value, *reward_normalization, member_normalization)
    trained = PolicyAndValue(policy, value, value_head)
    roles = Roles(trained, ref_model, frozen_reward, reward_in_value=value_model == "reward")
    return trained, roles, tokenizer, reward_tokenizer
