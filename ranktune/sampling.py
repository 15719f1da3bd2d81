"""Sampling answers and reading log-probs: shared by PPO's rollouts and every policy evaluation.

Queries are left-padded so that every answer starts at the same column `Q`; answers are cut
after their first EOS and right-padded with the pad token (never EOS: see ranktune.models).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from trl.trainer.utils import selective_log_softmax, selective_log_softmax_and_entropy

from ranktune.prompting import render_prompt

ENGINES = ("generate", "continuous_batching")  # generate(): KV cache; transformers' paged continuous batching


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generate() uses them: (B, T) -> (B, T)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def answer_logprobs(logits: torch.Tensor, responses: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probs (B, R) of the answer tokens (B, R) under logits (B, R, V) at `temperature`, in fp32: the one
    definition of the old, new, reference and evaluation log-probs, so they are always comparable."""
    return selective_log_softmax(logits.float() / temperature, responses)


def answer_logprobs_and_entropy(logits: torch.Tensor, responses: torch.Tensor, temperature: float
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """`answer_logprobs` and the entropy (B, R) of the same tempered distribution."""
    return selective_log_softmax_and_entropy(logits.float(), responses, False, temperature)


def response_mask(responses: torch.Tensor, eos_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask (B, R) of tokens up to and including the first EOS, and whether each response ended (B,)."""
    is_eos = responses == eos_token_id  # (B, R)
    ended = is_eos.any(dim=1)
    # position of the first EOS, or R when there is none
    first_eos = torch.where(ended, is_eos.int().argmax(dim=1), torch.full_like(ended, responses.shape[1], dtype=torch.long))
    positions = torch.arange(responses.shape[1], device=responses.device)  # (R,)
    mask = (positions[None, :] <= first_eos[:, None]).long()
    return mask, ended


@dataclass
class Samples:
    prompts: list             # the prompts as given (text or chat messages)
    queries: torch.Tensor     # (B, Q) left-padded prompt tokens
    query_mask: torch.Tensor  # (B, Q)
    responses: torch.Tensor   # (B, R) answer tokens, pad after the first EOS
    mask: torch.Tensor        # (B, R) 1 up to and including the first EOS
    ended: torch.Tensor       # (B,) the answer emitted EOS within R tokens
    logprobs: torch.Tensor | None = None  # (B, R) sampling policy's log-probs, at the sampling temperature
    hidden: torch.Tensor | None = None    # (B, R, H) last hidden state of the state before each answer token

    @property
    def context_length(self) -> int:
        return self.queries.shape[1]

    @property
    def input_ids(self) -> torch.Tensor:  # (B, Q + R)
        return torch.cat([self.queries, self.responses], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:  # (B, Q + R)
        return torch.cat([self.query_mask, self.mask], dim=1)

    def answers(self, tokenizer) -> list[str]:
        """Each answer's text up to its first EOS, special tokens kept: the reward model's tokenizer reads
        them back as the same tokens, so it scores what the policy emitted. Skipping them would hide
        tokens that count in KL and values from the reward: a gap a policy could learn to use."""
        lengths = (self.mask.sum(1) - self.ended.long()).tolist()
        return [tokenizer.decode(row[:n], skip_special_tokens=False) for row, n in zip(self.responses.tolist(), lengths)]


def sampling_config(tokenizer, max_new_tokens: int, temperature: float) -> GenerationConfig:
    """Pure sampling at `temperature`: no top-k/top-p, no penalties, so the log-probs PPO computes with
    the same temperature are those of the distribution the tokens were really drawn from. `sample`
    applies this config alone, not merged into the model's own (see `stated_config_only`)."""
    return GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=0, do_sample=True, temperature=temperature,
                            top_k=0, top_p=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0,
                            repetition_penalty=1.0, encoder_repetition_penalty=1.0, no_repeat_ngram_size=0,
                            encoder_no_repeat_ngram_size=0, num_beams=1, guidance_scale=1.0,
                            renormalize_logits=False, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)


@contextlib.contextmanager
def stated_config_only(model, config: GenerationConfig):
    """For the block, `config` is the model's own generation_config. generate() fills every field a
    passed config leaves unset from the model's (a Hub model may ship repetition_penalty 1.05, min_p,
    no_repeat_ngram_size, suppress_tokens...); those would change the distribution tokens are drawn
    from but not the raw logits log-probs are read from: silently off-policy."""
    inner = model
    while hasattr(inner, "get_base_model") and inner.get_base_model() is not inner:
        inner = inner.get_base_model()  # peft copies the inner model's config onto itself in generate()
    saved = inner.generation_config
    inner.generation_config = config
    try:
        yield
    finally:
        inner.generation_config = saved


def tokenize_prompts(tokenizer, prompts: list, max_prompt_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rendered prompts, left-padded (and left-truncated to `max_prompt_length`): (B, Q) ids and mask."""
    texts = [render_prompt(tokenizer, p) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False,
                    truncation=max_prompt_length is not None, max_length=max_prompt_length,
                    truncation_side="left")
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def sample(model, tokenizer, prompts: list, config: GenerationConfig, max_prompt_length: int | None = None,
           with_logprobs: bool = False, with_hidden: bool = False) -> Samples:
    """One sampled answer per prompt, with KV cache. `with_logprobs` keeps the sampling log-probs
    from generate()'s own logits, and `with_hidden` its last hidden states (what a value head on
    the policy reads), which saves PPO a forward pass of the policy."""
    queries, query_mask = tokenize_prompts(tokenizer, prompts, max_prompt_length)
    queries, query_mask = queries.to(model.device), query_mask.to(model.device)
    config = copy.deepcopy(config)
    config.return_dict_in_generate, config.output_logits = True, with_logprobs
    config.output_hidden_states = with_hidden
    # the caller hands over whole weights (under DeepSpeed ZeRO-3, gathered), so processes need not step in
    # lockstep: generate()'s ZeRO-3 default would hang an evaluation that runs on one process only
    with stated_config_only(model, config):
        out = model.generate(input_ids=queries, attention_mask=query_mask, generation_config=config,
                             synced_gpus=False)
    responses = out.sequences[:, queries.shape[1]:]  # (B, R)
    mask, ended = response_mask(responses, tokenizer.eos_token_id)
    responses = responses.masked_fill(mask == 0, tokenizer.pad_token_id)
    logprobs = None
    if with_logprobs:
        logits = torch.stack(out.logits, dim=1)  # (B, R, V) raw, before any logits processor
        logprobs = answer_logprobs(logits, responses, config.temperature)
    hidden = None
    if with_hidden:
        # step 0 ran over the whole prompt: its last position is the state before answer token 0;
        # step t > 0 ran over answer token t-1 alone, giving the state before answer token t
        steps = out.hidden_states  # R steps, each a tuple over layers of (B, tokens in the step, H)
        hidden = torch.cat([steps[0][-1][:, -1:]] + [step[-1] for step in steps[1:]], dim=1)  # (B, R, H)
    return Samples(prompts, queries, query_mask, responses, mask, ended, logprobs, hidden)


def response_logprobs(model, samples: Samples, temperature: float) -> torch.Tensor:
    """Log-probs (B, R) of the sampled answer tokens under `model` (one forward pass)."""
    input_ids, attention_mask = samples.input_ids, samples.attention_mask
    R = samples.responses.shape[1]
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_for(attention_mask),
                use_cache=False, logits_to_keep=R + 1)
    return answer_logprobs(out.logits[:, :-1], samples.responses, temperature)  # position t predicts token t


@torch.no_grad()
def sample_continuous(model, tokenizer, prompts: list, config: GenerationConfig,
                      max_prompt_length: int | None = None) -> Samples:
    """`sample` through transformers' continuous batching (paged KV cache, each request scheduled
    on its own, so finished answers free their slot at once): the engine that pays on a GPU with
    many rollouts. It runs the model object itself, so it always samples from the current weights
    (nothing to sync). The log-probs are left to a forward pass."""
    queries, query_mask = tokenize_prompts(tokenizer, prompts, max_prompt_length)
    answers = continuous_generate(model, [q[m.bool()].tolist() for q, m in zip(queries, query_mask)], config)
    width = max(1, max(len(a) for a in answers))
    pad = tokenizer.pad_token_id
    responses = torch.tensor([a + [pad] * (width - len(a)) for a in answers], device=queries.device)
    mask, ended = response_mask(responses, tokenizer.eos_token_id)
    responses = responses.masked_fill(mask == 0, pad)
    return Samples(prompts, queries.to(model.device), query_mask.to(model.device), responses.to(model.device),
                   mask.to(model.device), ended.to(model.device))


def continuous_generate(model, inputs: list[list[int]], config: GenerationConfig) -> list[list[int]]:
    """New tokens for each prompt (token ids, unpadded), in the order given, from `generate_batch`."""
    with stated_config_only(model, config):
        results = model.generate_batch(inputs=inputs, generation_config=config, progress_bar=False)
    # request ids are numbered in the order of the inputs
    ordered = sorted(results.values(), key=lambda r: int(r.request_id.rsplit("_", 1)[1]))
    failed = [r.error for r in ordered if r.error]
    if len(ordered) != len(inputs) or failed:
        raise RuntimeError(f"continuous batching returned {len(ordered)} of {len(inputs)} answers {failed[:1]}")
    return [list(r.generated_tokens[:config.max_new_tokens]) for r in ordered]
