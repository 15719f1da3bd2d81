"""How a prompt and an answer become model text — the one convention every stage must share.

The SFT data, the candidates reviewers see, the reward model's inputs and PPO's rollouts all go
through these functions, so a model is always scored on text shaped like the text it learned.
"""

from __future__ import annotations

PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


def render_prompt(tokenizer, prompt: str | list[dict]) -> str:
    """Text up to where the assistant's answer starts.

    Models with a chat template (SmolLM2-Instruct) get it; plain LMs (GPT-2) get a simple
    instruction format. `prompt` is a string or a list of chat messages.
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = []
    for msg in messages:
        if msg["role"] == "assistant":
            turns.append(f"### Response:\n{msg['content']}\n\n")
        else:
            turns.append(f"### Instruction:\n{msg['content']}\n\n")
    return "".join(turns) + "### Response:\n"


def render_answer(tokenizer, answer: str) -> str:
    """The answer as the model should produce it: ending in EOS, so it learns to stop."""
    return answer + tokenizer.eos_token


def prompt_text(prompt: str | list[dict]) -> str:
    """A readable one-string form of a prompt (for people, the label store and plots)."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)
