"""`python -m labeling_ui generate`: sample K answers per prompt from a policy into the label store.

Batched sampling: B prompts, left-padded so every prompt ends where its answers begin, each
sampled K times in one `generate` call with the KV cache. Each prompt's K answers are written
as one item in one transaction as soon as they exist, so a crashed run resumes where it
stopped (prompts that already have an item in the round are skipped).
"""

from __future__ import annotations

from dataclasses import asdict

from ranktune.errors import InputError
from ranktune.models import load_causal_lm
from ranktune.prompting import render_prompt

from labeling_ui.config import GenerateArguments
from labeling_ui.store import LabelStore, prompt_key


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


def generate(store: LabelStore, prompts: list, args: GenerateArguments, round: int) -> dict:
    """Write K answers for every prompt that has no item in `round` yet; returns counts."""
    import torch
    from tqdm.auto import tqdm

    from ranktune.sampling import ENGINES  # torch and transformers: only when answers are generated

    if args.engine not in ENGINES:
        raise InputError(f"must be one of {', '.join(ENGINES)}, got '{args.engine}'", field="engine")
    done = store.items_in_round(round)
    seen, todo = set(), []
    for p in prompts:
        key = prompt_key(p)
        if key not in done and key not in seen:  # a prompt listed twice is asked once
            seen.add(key)
            todo.append(p)
    stats = {"round": round, "policy": args.policy, "prompts": len(prompts), "already_done": len(done & {
        prompt_key(p) for p in prompts}), "duplicates": len(prompts) - len({prompt_key(p) for p in prompts}),
             "items_written": 0, "answers_written": 0, "cut_off": 0}
    if not todo:
        return stats
    torch.manual_seed(args.seed)
    model, tokenizer = load_causal_lm(args.policy)
    model.eval()
    settings = {k: v for k, v in asdict(args).items() if k in ("temperature", "top_p", "max_new_tokens", "seed")}
    bar = tqdm(total=len(todo), desc=f"round {round}: sampling {args.k} answers per prompt", unit="prompt")
    for start in range(0, len(todo), args.batch_size):
        batch = todo[start:start + args.batch_size]
        answers, ended, lengths = sample_answers(model, tokenizer, batch, args.k, args)
        for prompt, a, e, n in zip(batch, answers, ended, lengths):
            if store.add_item(prompt, a, e, args.policy, round, n, settings, question=args.question) is not None:
                stats["items_written"] += 1
                stats["answers_written"] += len(a)
                stats["cut_off"] += sum(not x for x in e)
        bar.update(len(batch))
    bar.close()
    return stats
