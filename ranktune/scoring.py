"""Load a reward model folder and score answers with its normalisation applied.

The folder is a `transformers` sequence classifier with one output, its tokenizer, and
`reward_normalization.json` holding `gain` and `bias` fitted after training so the SFT
policy's answers score mean 0, std 1 (`normalised = gain * raw + bias`). Every later stage
scores through `RewardScorer`, so all of them see the same scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ranktune.errors import InputError
from ranktune.models import load_sequence_classifier
from ranktune.prompting import render_answer, render_prompt

NORMALIZATION_FILE = "reward_normalization.json"


def read_normalization(folder: str | Path) -> tuple[float, float]:
    gain, bias, _ = read_normalization_settings(folder)
    return gain, bias


def read_normalization_settings(folder: str | Path) -> tuple[float, float, int | None]:
    """gain, bias and the max_length the normalisation was fitted at (None when not recorded)."""
    path = Path(folder) / NORMALIZATION_FILE
    if not path.is_file():
        return 1.0, 0.0, None
    try:
        data = json.loads(path.read_text())
        max_length = data.get("max_length")
        return float(data["gain"]), float(data["bias"]), int(max_length) if max_length is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"bad reward normalisation ({err})", path) from None


class RewardScorer:
    """`score(prompts, answers)` -> normalised rewards, one float per answer."""

    def __init__(self, model, tokenizer, gain: float = 1.0, bias: float = 0.0, max_length: int = 512):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.gain, self.bias, self.max_length = gain, bias, max_length

    @classmethod
    def load(cls, folder: str | Path, dtype=None, max_length: int | None = None) -> "RewardScorer":
        """`max_length` defaults to the one the model was trained and normalised at: texts cut
        at another length score differently, and the stored gain/bias would no longer fit."""
        model, tokenizer = load_sequence_classifier(str(folder), dtype=dtype)
        gain, bias, trained_length = read_normalization_settings(folder)
        return cls(model, tokenizer, gain, bias, max_length or trained_length or 512)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def raw_scores_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Raw scores (batch,) for token ids; the model reads the last non-pad token."""
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        return out.logits[:, 0].float()

    def score_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.gain * self.raw_scores_ids(input_ids, attention_mask) + self.bias

    def texts(self, prompts: list, answers: list[str], ended: list[bool] | None = None) -> list[str]:
        """Model text for each (prompt, answer); an answer that ended gets its EOS back."""
        ended = ended if ended is not None else [True] * len(answers)
        return [render_prompt(self.tokenizer, p) + (render_answer(self.tokenizer, a) if e else a)
                for p, a, e in zip(prompts, answers, ended)]

    def score(self, prompts: list, answers: list[str], ended: list[bool] | None = None,
              batch_size: int = 16, raw: bool = False) -> list[float]:
        texts = self.texts(prompts, answers, ended)
        scores: list[float] = []
        # Left-truncate so the answer's end, where the score is read, is always kept.
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"
        try:
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                                     truncation=True, max_length=self.max_length, add_special_tokens=False)
                fn = self.raw_scores_ids if raw else self.score_ids
                scores.extend(fn(enc["input_ids"], enc["attention_mask"]).tolist())
        finally:
            self.tokenizer.truncation_side = side
        return scores
