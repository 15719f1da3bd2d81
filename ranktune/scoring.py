"""Load a reward model folder and score answers with its normalisation applied.

The folder is a `transformers` sequence classifier, its tokenizer, and `reward_normalization.json`
holding `gain` and `bias` fitted after training so the SFT policy's answers score mean 0, std 1
(`normalised = gain * raw + bias`). Every later stage scores through `RewardScorer`, so all of them
see the same scale.

An ensemble (`python -m reward --ensemble_size M`) is the same kind of folder with M outputs, one per
member, on one shared base: one forward pass scores every member. Its json adds `members`, each
member's own gain and bias; the top-level ones are the fit of the members' raw mean, so a reader that
knows nothing of members still gets a normalised score. `score` then returns one aggregate per answer
(`ranktune.aggregation`: the members' mean by default), `score_members` every member's score and
`score_with_spread` the aggregate with the members' standard deviation beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ranktune.aggregation import aggregate, check_aggregation
from ranktune.aggregation import spread as member_spread
from ranktune.errors import InputError
from ranktune.models import load_sequence_classifier
from ranktune.prompting import render_answer, render_prompt

NORMALIZATION_FILE = "reward_normalization.json"


def read_normalization(folder: str | Path) -> tuple[float, float]:
    gain, bias, _ = read_normalization_settings(folder)
    return gain, bias


def _read_normalization_file(folder: str | Path) -> tuple[float, float, int | None, list[tuple[float, float]] | None]:
    path = Path(folder) / NORMALIZATION_FILE
    if not path.is_file():
        return 1.0, 0.0, None, None
    try:
        data = json.loads(path.read_text())
        max_length = data.get("max_length")
        members = data.get("members")
        if members is not None:
            if not isinstance(members, list) or not members:
                raise ValueError("'members' must be a non-empty list of {gain, bias}")
            members = [(float(m["gain"]), float(m["bias"])) for m in members]
        return (float(data["gain"]), float(data["bias"]), int(max_length) if max_length is not None else None,
                members)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"bad reward normalisation ({err})", path) from None


def read_normalization_settings(folder: str | Path) -> tuple[float, float, int | None]:
    """gain, bias and the max_length the normalisation was fitted at (None when not recorded). The
    members' own gains and biases, when the file has them, are checked too: `read_member_normalization`."""
    gain, bias, max_length, _ = _read_normalization_file(folder)
    return gain, bias, max_length


def read_member_normalization(folder: str | Path) -> list[tuple[float, float]] | None:
    """Each ensemble member's (gain, bias), or None when the file has no `members` (a single model)."""
    return _read_normalization_file(folder)[3]


def _outputs(model) -> int:
    labels = getattr(getattr(model, "config", None), "num_labels", None)
    return labels if isinstance(labels, int) and labels > 0 else 1


class RewardScorer:
    """`score(prompts, answers)` -> normalised rewards, one float per answer.

    `member_normalization`: each member's (gain, bias) for an ensemble (default: the top-level ones)."""

    def __init__(self, model, tokenizer, gain: float = 1.0, bias: float = 0.0, max_length: int = 512,
                 member_normalization: list[tuple[float, float]] | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.gain, self.bias, self.max_length = gain, bias, max_length
        self._members = _outputs(model)
        norms = member_normalization if member_normalization is not None else [(gain, bias)] * self._members
        if len(norms) != self._members:
            raise InputError(f"the normalisation has {len(norms)} member(s) but the model {self._members} outputs")
        self.member_gains = [float(g) for g, _ in norms]
        self.member_biases = [float(b) for _, b in norms]

    @classmethod
    def load(cls, folder: str | Path, dtype=None, max_length: int | None = None) -> "RewardScorer":
        """`max_length` defaults to the one the model was trained and normalised at: texts cut
        at another length score differently, and the stored gain/bias would no longer fit."""
        model, tokenizer = load_sequence_classifier(str(folder), dtype=dtype)
        gain, bias, trained_length, members = _read_normalization_file(folder)
        return cls(model, tokenizer, gain, bias, max_length or trained_length or 512, members)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def members(self) -> int:
        """How many reward models score at once (1: a single model; M > 1: an ensemble's members)."""
        return self._members

    @torch.no_grad()
    def raw_member_scores_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Raw scores (batch, members) for token ids, in one forward pass over the shared base."""
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        return out.logits.float()

    def raw_scores_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Raw scores (batch,) for token ids, read at the last non-pad token (an ensemble: the members' mean)."""
        logits = self.raw_member_scores_ids(input_ids, attention_mask)
        return logits[:, 0] if self._members == 1 else logits.mean(dim=-1)

    def normalize_members(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw member scores (..., members) -> normalised, each member with its own gain and bias."""
        if self._members == 1:
            return self.gain * raw + self.bias
        gains = torch.tensor(self.member_gains, dtype=raw.dtype, device=raw.device)
        biases = torch.tensor(self.member_biases, dtype=raw.dtype, device=raw.device)
        return gains * raw + biases

    def member_scores_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised scores (batch, members), each member with its own gain and bias."""
        return self.normalize_members(self.raw_member_scores_ids(input_ids, attention_mask))

    def score_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, aggregation: str = "mean",
                  uncertainty_coef: float = 1.0) -> torch.Tensor:
        """Normalised scores (batch,); an ensemble's members aggregated (`ranktune.aggregation`)."""
        if self._members == 1:
            check_aggregation(aggregation, uncertainty_coef)
            return self.gain * self.raw_scores_ids(input_ids, attention_mask) + self.bias
        return aggregate(self.member_scores_ids(input_ids, attention_mask), aggregation, uncertainty_coef)

    def texts(self, prompts: list, answers: list[str], ended: list[bool] | None = None) -> list[str]:
        """Model text for each (prompt, answer); an answer that ended gets its EOS back."""
        ended = ended if ended is not None else [True] * len(answers)
        return [render_prompt(self.tokenizer, p) + (render_answer(self.tokenizer, a) if e else a)
                for p, a, e in zip(prompts, answers, ended)]

    def _batches(self, prompts: list, answers: list[str], ended: list[bool] | None, batch_size: int):
        """Token batches of the model texts, cut from the left so the answer's end, where the score is read,
        is always kept."""
        texts = self.texts(prompts, answers, ended)
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"
        try:
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                                     truncation=True, max_length=self.max_length, add_special_tokens=False)
                yield enc["input_ids"], enc["attention_mask"]
        finally:
            self.tokenizer.truncation_side = side

    def _raw_members(self, prompts, answers, ended, batch_size) -> torch.Tensor:
        parts = [self.raw_member_scores_ids(ids, mask) for ids, mask in self._batches(prompts, answers, ended,
                                                                                      batch_size)]
        return torch.cat(parts).cpu() if parts else torch.zeros(0, self._members)

    def score(self, prompts: list, answers: list[str], ended: list[bool] | None = None, batch_size: int = 16,
              raw: bool = False, aggregation: str = "mean", uncertainty_coef: float = 1.0) -> list[float]:
        """One score per answer: normalised, or the raw model output (`raw`; an ensemble's raw mean). An
        ensemble's normalised members are aggregated: `aggregation` mean, min or mean_minus_std."""
        check_aggregation(aggregation, uncertainty_coef)
        if self._members > 1:
            return self.score_with_spread(prompts, answers, ended, batch_size, raw, aggregation, uncertainty_coef)[0]
        scores: list[float] = []
        for ids, mask in self._batches(prompts, answers, ended, batch_size):
            fn = self.raw_scores_ids if raw else self.score_ids
            scores.extend(fn(ids, mask).tolist())
        return scores

    def score_members(self, prompts: list, answers: list[str], ended: list[bool] | None = None,
                      batch_size: int = 16, raw: bool = False) -> torch.Tensor:
        """(answers, members): every member's score of each answer, normalised per member (or raw)."""
        members = self._raw_members(prompts, answers, ended, batch_size)
        return members if raw else self.normalize_members(members)

    def score_with_spread(self, prompts: list, answers: list[str], ended: list[bool] | None = None,
                          batch_size: int = 16, raw: bool = False, aggregation: str = "mean",
                          uncertainty_coef: float = 1.0) -> tuple[list[float], list[float]]:
        """(scores as `score` gives them, spreads): one pass; a spread is the members' standard deviation of
        the normalised scores (population: 0 for a single model, and where the members agree)."""
        check_aggregation(aggregation, uncertainty_coef)
        raw_members = self._raw_members(prompts, answers, ended, batch_size)
        members = self.normalize_members(raw_members)
        if self._members == 1:  # elementwise as in `score`: the same floats
            scores = (raw_members if raw else members)[:, 0].tolist()
        elif raw:
            scores = raw_members.mean(dim=-1).tolist()
        else:
            scores = aggregate(members, aggregation, uncertainty_coef).tolist()
        return scores, member_spread(members).tolist()

    def spread(self, prompts: list, answers: list[str], ended: list[bool] | None = None,
               batch_size: int = 16) -> list[float]:
        """The members' standard deviation of each answer's normalised score (0 for a single model)."""
        return member_spread(self.score_members(prompts, answers, ended, batch_size)).tolist()
