"""The final policy against the SFT policy on held-out prompts: reward-model score, KL, win rate,
and the gold score of the simulated reviewers (a rule-based judge the reward model never saw).

Both policies answer every prompt by sampling at the training temperature; KL(policy || SFT) is
estimated on the policy's own answers as the mean of the summed per-token log-ratios.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from rlhf.generation import response_logprobs, sample
from ranktune.gold import gold_score
from ranktune.prompting import prompt_text


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


@torch.no_grad()
def evaluate(trainer, prompts: list, batch_size: int = 16, seed: int = 1234) -> tuple[dict, list[dict]]:
    """Returns (metrics, one row per prompt with both answers and their scores)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    tok, args = trainer.tokenizer, trainer.args
    rows: list[dict] = []
    kls: list[float] = []
    torch.manual_seed(seed)
    for i in tqdm(range(0, len(prompts), batch_size), desc="evaluating", unit="batch", leave=False):
        batch = prompts[i:i + batch_size]
        tuned = sample(model.policy, tok, batch, trainer.generation_config, args.max_prompt_length)
        tuned_lp = response_logprobs(model.policy, tuned, args.temperature)
        with trainer.roles.reference() as reference:
            base = sample(reference, tok, batch, trainer.generation_config, args.max_prompt_length)
            ref_lp = response_logprobs(reference, tuned, args.temperature)
        kls.extend(((tuned_lp - ref_lp) * tuned.mask).sum(1).tolist())
        tuned_answers, base_answers = tuned.answers(tok), base.answers(tok)
        tuned_scores = trainer.reward_scores(batch, tuned_answers, tuned.ended.tolist())
        base_scores = trainer.reward_scores(batch, base_answers, base.ended.tolist())
        for j, p in enumerate(batch):
            text = prompt_text(p)
            rows.append({"prompt": text,
                         "sft_answer": base_answers[j], "sft_score": base_scores[j], "sft_ended": bool(base.ended[j]),
                         "sft_gold": gold_score(text, base_answers[j], bool(base.ended[j])),
                         "ppo_answer": tuned_answers[j], "ppo_score": tuned_scores[j],
                         "ppo_ended": bool(tuned.ended[j]),
                         "ppo_gold": gold_score(text, tuned_answers[j], bool(tuned.ended[j])),
                         "ppo_kl": kls[len(rows)]})
    wins = [1.0 if r["ppo_score"] > r["sft_score"] else 0.5 if r["ppo_score"] == r["sft_score"] else 0.0 for r in rows]
    metrics = {
        "prompts": len(rows),
        "sft_score": _mean([r["sft_score"] for r in rows]), "ppo_score": _mean([r["ppo_score"] for r in rows]),
        "kl_to_sft": _mean(kls), "win_rate_vs_sft": _mean(wins),
        "sft_gold": _mean([r["sft_gold"] for r in rows]), "ppo_gold": _mean([r["ppo_gold"] for r in rows]),
        "sft_ended": _mean([float(r["sft_ended"]) for r in rows]),
        "ppo_ended": _mean([float(r["ppo_ended"]) for r in rows]),
        "sft_words": _mean([len(r["sft_answer"].split()) for r in rows]),
        "ppo_words": _mean([len(r["ppo_answer"].split()) for r in rows]),
    }
    return metrics, rows
