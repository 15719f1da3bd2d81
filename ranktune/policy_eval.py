"""A tuned policy against the policy it started from, on held-out prompts: reward-model score, KL,
win rate, and the gold score of the simulated reviewers (a rule-based judge no model saw).

Every way of tuning a policy (PPO, DPO, RLOO, GRPO) is judged by this one function, so their
figures compare. Both policies answer each prompt `samples_per_prompt` times by sampling at the
training temperature, with common random numbers (the same random stream for both, batch by
batch); KL(policy || start) is estimated on the tuned policy's own answers as the mean of the
summed per-token log-ratios (at that temperature).
"""

from __future__ import annotations

from typing import Callable, ContextManager

import torch
from tqdm.auto import tqdm

from ranktune.gold import gold_score
from ranktune.prompting import prompt_text
from ranktune.sampling import response_logprobs, sample
from ranktune.stats import mean_se

ScoreFn = Callable[[list, list[str], list[bool]], list[float]]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _standard_error(xs: list[float]) -> float:
    return mean_se(xs)[1]


@torch.no_grad()
def compare_policies(policy, reference: Callable[[], ContextManager], tokenizer, score: ScoreFn, prompts: list,
                     generation_config, temperature: float, max_prompt_length: int | None = None,
                     batch_size: int = 16, samples_per_prompt: int = 1, seed: int = 1234) -> tuple[dict, list[dict]]:
    """Returns (metrics, one row per answer pair).

    `reference()` is a context manager giving the starting policy (for a LoRA policy: the same
    model with its adapter switched off); `score(prompts, answers, ended)` the normalised reward.
    Metric keys keep PPO's names (`sft_*` = the starting policy, `ppo_*` = the tuned one).
    """
    policy.eval()
    asked = [p for p in prompts for _ in range(samples_per_prompt)]  # each prompt's samples side by side
    rows: list[dict] = []
    for i in tqdm(range(0, len(asked), batch_size), desc="evaluating", unit="batch", leave=False):
        batch = asked[i:i + batch_size]
        # Common random numbers: both policies sample this batch from the same random stream, so where
        # they agree on a token's distribution they draw the same token (torch.multinomial's one-sample
        # draw is an exponential race, a coupling), and answers stay alike until the policies differ.
        # Each policy's answers are still draws from that policy alone, so the gain's estimate is
        # unchanged in expectation; its variance loses the noise the two samples do not share.
        torch.manual_seed(seed + i)
        tuned = sample(policy, tokenizer, batch, generation_config, max_prompt_length)
        tuned_lp = response_logprobs(policy, tuned, temperature)
        with reference() as start:
            torch.manual_seed(seed + i)
            base = sample(start, tokenizer, batch, generation_config, max_prompt_length)
            ref_lp = response_logprobs(start, tuned, temperature)
        kls = ((tuned_lp - ref_lp) * tuned.mask).sum(1).tolist()
        tuned_answers, base_answers = tuned.answers(tokenizer), base.answers(tokenizer)
        tuned_scores = score(batch, tuned_answers, tuned.ended.tolist())
        base_scores = score(batch, base_answers, base.ended.tolist())
        for j, p in enumerate(batch):
            text = prompt_text(p)
            rows.append({"prompt": text,
                         "sft_answer": base_answers[j], "sft_score": base_scores[j], "sft_ended": bool(base.ended[j]),
                         "sft_gold": gold_score(text, base_answers[j], bool(base.ended[j])),
                         "ppo_answer": tuned_answers[j], "ppo_score": tuned_scores[j],
                         "ppo_ended": bool(tuned.ended[j]),
                         "ppo_gold": gold_score(text, tuned_answers[j], bool(tuned.ended[j])),
                         "ppo_kl": kls[j]})
    return summarize(rows, samples_per_prompt), rows


def summarize(rows: list[dict], samples_per_prompt: int = 1) -> dict:
    """Means over all answers, and standard errors of the gains over prompts (a prompt's samples
    are not independent of each other, so the prompt is the unit)."""
    def col(key):
        return [r[key] for r in rows]

    by_prompt: dict[str, list[dict]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r)
    score_gain = [_mean([r["ppo_score"] - r["sft_score"] for r in rs]) for rs in by_prompt.values()]
    gold_gain = [_mean([r["ppo_gold"] - r["sft_gold"] for r in rs]) for rs in by_prompt.values()]
    wins = [1.0 if r["ppo_score"] > r["sft_score"] else 0.5 if r["ppo_score"] == r["sft_score"] else 0.0 for r in rows]
    return {
        "prompts": len(by_prompt), "samples_per_prompt": samples_per_prompt,
        "sft_score": _mean(col("sft_score")), "ppo_score": _mean(col("ppo_score")),
        "score_gain_se": _standard_error(score_gain),
        "kl_to_sft": _mean(col("ppo_kl")), "win_rate_vs_sft": _mean(wins),
        "sft_gold": _mean(col("sft_gold")), "ppo_gold": _mean(col("ppo_gold")),
        "gold_gain_se": _standard_error(gold_gain),
        "sft_ended": _mean([float(x) for x in col("sft_ended")]),
        "ppo_ended": _mean([float(x) for x in col("ppo_ended")]),
        "sft_words": _mean([len(a.split()) for a in col("sft_answer")]),
        "ppo_words": _mean([len(a.split()) for a in col("ppo_answer")]),
    }
