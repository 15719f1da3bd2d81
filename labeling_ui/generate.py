"""`python -m labeling_ui generate`: sample K answers per prompt from a policy into the label store.

Batched sampling: B prompts, left-padded so every prompt ends where its answers begin, each
sampled K times in one `generate` call with the KV cache. Each prompt's K answers are written
as one item in one transaction as soon as they exist, so a crashed run resumes where it
stopped (prompts that already have an item in the round are skipped).

`--select random|uncertainty` sends only some of the prompts: a seeded draw, or the ones whose
answers an ensemble reward model is least sure how to order (labeling_ui/selection.py). Those are
written together, in one transaction, once chosen (choose_and_write says how a rerun resumes).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ranktune.errors import InputError
from ranktune.models import load_causal_lm
from ranktune.prompting import prompt_text, render_prompt
from ranktune.quantize import check_sampling_weights, sampling_model

from labeling_ui.config import GenerateArguments
from labeling_ui.selected_items import ChosenItem
from labeling_ui.store import LabelStore, prompt_key

if TYPE_CHECKING:
    import numpy as np


def pick_round(store: LabelStore, policy: str, requested: int | None) -> int:
    """The requested round; else the latest one if this policy wrote it (a resume), else a new one."""
    if requested is not None:
        return requested
    rounds = store.rounds()
    if not rounds:
        return 1
    latest = max(r for r, _, _ in rounds)
    policies = {p for r, p, _ in rounds if r == latest}
    return latest if policies == {policy} else latest + 1


def sample_answers(model, tokenizer, prompts: list, k: int, args: GenerateArguments):
    """K sampled answers per prompt: (texts, ended, num_tokens), each a list of K per prompt."""
    import torch

    from ranktune.sampling import continuous_generate, sampling_config, stated_config_only

    texts = [render_prompt(tokenizer, p) for p in prompts]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    # the stated settings alone (temperature, top_p), for both engines: not whatever penalties or top-k the
    # model's own generation_config or transformers' defaults would add
    config = sampling_config(tokenizer, args.max_new_tokens, args.temperature)
    config.top_p = args.top_p
    if args.engine == "continuous_batching":
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        rows = continuous_generate(model, [x for x in ids for _ in range(k)], config)  # prompt b: rows b*K ..
    else:
        tokenizer.padding_side = "left"
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        config.num_return_sequences = k
        with torch.no_grad(), stated_config_only(model, config):
            out = model.generate(**enc, generation_config=config)
        rows = out[:, enc["input_ids"].shape[1]:].tolist()  # (B*K, T): prompt b's samples are rows b*K .. b*K+K-1
    answers, ended, lengths = [], [], []
    for row in rows:
        stop = row.index(eos) if eos in row else None
        body = row[:stop] if stop is not None else [t for t in row if t != pad]
        answers.append(tokenizer.decode(body, skip_special_tokens=True).strip())
        ended.append(stop is not None)
        lengths.append(len(body))
    per = lambda xs: [xs[i * k:(i + 1) * k] for i in range(len(prompts))]  # noqa: E731
    return per(answers), per(ended), per(lengths)


def check_selection(g: GenerateArguments) -> None:
    """generate's --select settings, before any model loads (the ensemble's size is checked when it loads)."""
    from labeling_ui.selection import METHODS

    if g.select not in METHODS:
        raise InputError(f"must be one of {', '.join(METHODS)}, got '{g.select}'", field="select")
    given = [name for name in ("select_count", "select_pool", "select_reward_model") if getattr(g, name) is not None]
    if g.select == "order" and given:
        raise InputError("only with --select random or uncertainty (order sends every prompt: use --max_prompts "
                         "for fewer)", field=given[0])
    for name in ("select_count", "select_pool"):
        if getattr(g, name) is not None and getattr(g, name) < 1:
            raise InputError("must be at least 1", field=name)
    if not g.select_diversity >= 0:
        raise InputError("must be 0 or more", field="select_diversity")
    if g.select == "uncertainty":
        if not g.select_reward_model:
            raise InputError("--select uncertainty needs the reward model ensemble that scores the pool",
                             field="select_reward_model")
        if not Path(g.select_reward_model).is_dir():
            raise InputError("not a reward model folder", g.select_reward_model, field="select_reward_model")
    elif g.select_reward_model is not None:
        raise InputError("only with --select uncertainty", field="select_reward_model")


def load_policy(args: GenerateArguments):
    """The policy to sample candidate answers from (seeded; an int8 copy with --sampling_weights int8)."""
    import torch

    torch.manual_seed(args.seed)
    model, tokenizer = load_causal_lm(args.policy)
    return sampling_model(model.eval(), args.sampling_weights), tokenizer


def _sampled(model, tokenizer, todo: list, args: GenerateArguments, desc: str):
    """(prompt, answers, ended, num_tokens) for each prompt of `todo`, batch by batch, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=desc, unit="prompt")
    for start in range(0, len(todo), args.batch_size):
        batch = todo[start:start + args.batch_size]
        yield from zip(batch, *sample_answers(model, tokenizer, batch, args.k, args))
        bar.update(len(batch))
    bar.close()


def generate(store: LabelStore, prompts: list, args: GenerateArguments, round: int) -> dict:
    """Write K answers for every prompt that has no item in `round` yet (select order), or for the ones
    `args.select` chooses from them (random, uncertainty: choose_and_write); returns counts."""
    from ranktune.sampling import ENGINES  # torch and transformers: only when answers are generated

    if args.engine not in ENGINES:
        raise InputError(f"must be one of {', '.join(ENGINES)}, got '{args.engine}'", field="engine")
    check_sampling_weights(args.sampling_weights)
    if args.sampling_weights != "fp32" and args.engine != "generate":
        raise InputError("int8 sampling weights run with engine generate only", field="sampling_weights")
    done = store.items_in_round(round)
    seen, todo = set(), []
    for p in prompts:
        key = prompt_key(p)
        if key not in done and key not in seen:  # a prompt listed twice is asked once
            seen.add(key)
            todo.append(p)
    stats = {"round": round, "policy": args.policy, "prompts": len(prompts), "already_done": len(done & {
        prompt_key(p) for p in prompts}), "duplicates": len(prompts) - len({prompt_key(p) for p in prompts}),
             "items_written": 0, "answers_written": 0, "cut_off": 0, "select": args.select,
             "sampling_weights": args.sampling_weights}
    if args.select != "order":
        return choose_and_write(store, todo, args, round, stats)
    if not todo:
        return stats
    model, tokenizer = load_policy(args)
    desc = f"round {round}: sampling {args.k} answers per prompt"
    for prompt, a, e, n in _sampled(model, tokenizer, todo, args, desc):
        if store.add_item(prompt, a, e, args.policy, round, n, _settings(args), question=args.question) is not None:
            _count(stats, e)
    return stats


def _settings(args: GenerateArguments) -> dict:
    keep = ("temperature", "top_p", "max_new_tokens", "seed", "sampling_weights")
    return {k: v for k, v in asdict(args).items() if k in keep}


def _count(stats: dict, ended) -> None:
    stats["items_written"] += 1
    stats["answers_written"] += len(ended)
    stats["cut_off"] += sum(not x for x in ended)


def load_scorer(folder: str):
    """The ensemble that scores the pool (ranktune/scoring.py), imported only when it is needed."""
    from ranktune.scoring import RewardScorer

    return RewardScorer.load(folder)


def check_ensemble(scorer, folder: str) -> int:
    """Its member count M; an InputError unless M >= 2 (BALD, the members' disagreement, is 0 for one model)."""
    members = int(getattr(scorer, "members", 1))
    if members < 2:
        raise InputError(f"--select uncertainty needs a reward model ensemble of 2 or more members (one model "
                         f"cannot disagree with itself: every item would score 0); {folder} has {members}",
                         field="select_reward_model")
    return members


def member_scores(scorer, items: list) -> "np.ndarray":
    """(n, K, M): each member's normalised score of each answer of the n sampled items."""
    import numpy as np

    prompts = [prompt for prompt, answers, _, _ in items for _ in answers]
    answers = [a for _, answers, _, _ in items for a in answers]
    ended = [e for _, _, ended, _ in items for e in ended]
    scores = scorer.score_members(prompts, answers, ended, batch_size=16)  # (n*K, M), torch
    scores = np.asarray(scores.detach().cpu().float().numpy() if hasattr(scores, "detach") else scores, dtype=float)
    return scores.reshape(len(items), len(items[0][1]), -1)


def choose_and_write(store: LabelStore, todo: list, args: GenerateArguments, round: int, stats: dict) -> dict:
    """select random|uncertainty: the round's items are `select_count` chosen from the pool (the first
    `select_pool` prompts of `todo`), all written in one transaction with priority 1/rank and a selection
    record. Resume: the round's earlier chosen items (of this method) count against select_count, so a
    rerun after a crash (nothing written) chooses again, and one after a finished run writes nothing
    (and samples nothing); a larger select_count tops the round up, away from prompts it already has."""
    from labeling_ui import selection

    earlier = store.round_selections(round)
    taken = sum(1 for _, sel in earlier if sel and sel.get("method") == args.select)
    pool = todo[:args.select_pool] if args.select_pool else todo
    budget = min(len(pool), args.select_count - taken if args.select_count else len(pool))
    stats |= {"pool": len(pool), "scored": 0, "already_chosen": taken}
    if budget <= 0:
        return stats
    scorer = None
    if args.select == "uncertainty":
        scorer = load_scorer(args.select_reward_model)  # before the pool is sampled: a wrong model fails at once
        stats["members"] = check_ensemble(scorer, args.select_reward_model)
    model, tokenizer = load_policy(args)
    if args.select == "random":  # answers for the drawn prompts only
        picked = [pool[i] for i in selection.draw(len(pool), budget, args.seed)]
        items = list(_sampled(model, tokenizer, picked, args, f"round {round}: sampling {args.k} answers per prompt"))
        scores = [None] * len(items)
    else:
        sampled = list(_sampled(model, tokenizer, pool, args, f"round {round}: sampling the pool of {len(pool)}"))
        uncertainty = selection.item_uncertainty(member_scores(scorer, sampled))  # (n,)
        stats["scored"] = len(sampled)
        order = selection.choose(uncertainty, [prompt_text(p) for p in pool], budget, args.select_diversity,
                                 chosen_before=[text for text, _ in earlier])
        items, scores = [sampled[i] for i in order], [float(uncertainty[i]) for i in order]
        stats["uncertainty"] = selection.summary(uncertainty, order)
    chosen = [ChosenItem(prompt, a, e, n, selection.priority(taken + i + 1),
                         selection.record(args.select, taken + i + 1, len(pool), score))
              for i, ((prompt, a, e, n), score) in enumerate(zip(items, scores))]
    for it, item_id in zip(chosen, store.add_items(chosen, args.policy, round, _settings(args), args.question)):
        if item_id is not None:
            _count(stats, it.ended)
    return stats
