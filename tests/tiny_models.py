"""Tiny, randomly initialised models built from configs in code, so unit tests need no download
and run in seconds. Each is saved to a folder, the way the stages exchange models."""

from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Write a short poem about the sea. Explain how rain forms in clouds.",
    "def add(a, b):\n    return a + b\n",
    "I can't help with that, but here is a safer alternative you could try.",
    "Sure! Here is a polite email to your manager asking for a day off next week.",
    "good great bad terrible yes no please thank you hello world answer question",
    "0123456789 + - * / = ( ) [ ] { } : ; , . ! ? ' \" < > # _",
]


def make_tokenizer(chat: bool = True, gpt2_style: bool = False):
    """A small byte-level BPE tokenizer trained in memory.

    `gpt2_style`: EOS is `<|endoftext|>` and there is no pad token, as with GPT-2, so the
    loader must add one.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>"] if gpt2_style else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    if gpt2_style:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                       pad_token="<|endoftext|>")
    if chat and not gpt2_style:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model_dir(folder: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random causal LM (`llama` like SmolLM2, or `gpt2`) plus tokenizer to `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    torch.manual_seed(seed)
    folder = Path(folder)
    tokenizer = make_tokenizer(gpt2_style=(arch == "gpt2"))
    vocab = len(tokenizer)
    if arch == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_positions=256, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    elif arch == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                             tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    else:
        raise ValueError(arch)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_reward_dir(folder: str | Path, policy_dir: str | Path, normalization: dict | None = None) -> Path:
    """A random one-output classifier over the tiny policy (same tokenizer), saved like a reward
    stage's folder; `normalization` becomes its reward_normalization.json."""
    import json

    from ranktune.models import load_sequence_classifier

    folder = Path(folder)
    model, tokenizer = load_sequence_classifier(str(policy_dir))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if normalization is not None:
        (folder / "reward_normalization.json").write_text(json.dumps(normalization))
    return folder


class CountingReward(torch.nn.Module):
    """A synthetic reward model: the share of answer tokens whose id is in `liked` (dense enough
    that a tiny random policy finds it). Scored through the same RewardScorer as a real one."""

    def __init__(self, liked: torch.Tensor, eos_token_id: int, pad_token_id: int):
        super().__init__()
        self.register_buffer("liked", liked)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # RewardScorer reads the device from a parameter
        self.eos, self.pad = eos_token_id, pad_token_id

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hits = torch.isin(input_ids, self.liked) & (input_ids != self.pad)
        score = hits.float().sum(1, keepdim=True) / 8.0
        return type("Out", (), {"logits": score})


def make_tiny_qwen2_dir(folder: str | Path, layer_types: list[str], sliding_window: int, seed: int = 0) -> Path:
    """A tiny random Qwen2-style causal LM whose layers mix full and sliding-window attention."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(seed)
    folder = Path(folder)
    tokenizer = make_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=len(layer_types), num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=256, use_sliding_window=True, sliding_window=sliding_window,
                         layer_types=list(layer_types), tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
