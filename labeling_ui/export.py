"""`python -m labeling_ui export`: the store's rankings as the files later stages read.

runs/<run>/export/ (replaced as a whole, in one rename):
    rankings.jsonl        {ranking_id, item_id, prompt, answers, ended (the model stopped by itself, per answer),
                           ranks (1 = best, ties allowed), reviewer, round, policy, flagged, weight, question,
                           shown (the answer positions in the order this reviewer saw them; null before v3)}
                          + strength (pairwise rows), scores (rating rows), selection (items generate --select
                          chose: {method, score, pool, rank}, labeling_ui/selection.py)
                                                                <- the reward stage reads this
    pairs.jsonl           {prompt, chosen, rejected, rank_distance, question, reviewer, ranking_id, weight}
                          + strength (pairs of pairwise questions), margin (only with margin_scale)
                                                                <- TRL's RewardTrainer takes this as is
    ratings.jsonl         {item_id, ranking_id, prompt, answers, ended, scores, reviewer, round, policy, weight}:
                          the raw 1-7 scores of rating questions (empty when there are none)
    consensus.jsonl       one ranking per item ranked by 2+ reviewers: the reliability model's consensus
                          order (reviewer "consensus", with the names that ranked it)
                                                                <- python -m reward --label_weighting consensus
    rankings_ds/, pairs_ds/   the same two as `datasets` folders (load_from_disk); a field a row lacks is null
    demonstrations.jsonl  {prompt, completion, author}: written answers an admin approved (SFT format),
                          author a pseudonymous reviewer id
    comments.jsonl        {item_id, ranking_id, reviewer, text}: what reviewers wrote about items
    flagged.jsonl         items whose flags an admin confirmed: never training data, kept as what went wrong
    reviewers.json        each reviewer's reliability (labeling_ui/reliability.py)
    arena_pairs.jsonl     {prompt (chat messages), chosen, rejected, reviewer, source "arena", model_chosen,
                          model_rejected, ...}: arena votes as pairs (labeling_ui/arena/export.py: which
                          turns make one); python -m reward --data .../arena_pairs.jsonl
    summary.json          counts (also per question type, in `questions`), and what was held out and why

Question types (`question`, labeling_ui/questions/). Every answer is exported as ranks over the
item's answers, by candidate position:
- ranking: the reviewer's ranks.
- pairwise: two answers; ranks [1, 2] or [2, 1] say which is better and `strength` how much:
  1 slightly, 2 better, 3 much better; 0 = about the same, ranks [1, 1], a tie, so no pair.
- rating: `scores`, 1-7 per answer, always in ratings.jsonl. With `ratings_as_rankings` (the
  default) they are also in rankings.jsonl as the ranks they imply (dense, higher score = better,
  equal scores tie, `scores` kept on the row) and give pairs, so the reward stage learns from
  them like any other; false keeps them out of rankings, pairs and consensus (for example to fit
  a regression head on ratings.jsonl and a pairwise reward model on the rest).

`rank_distance` is how many ranks apart a pair's two answers are (1 for a pairwise question);
`strength` is the reviewer's own "how much better". Neither is a `margin`: TRL's RewardTrainer
subtracts a `margin` column, in reward logits, from every pair's score difference, so a distance
of 1-3 there would ask for gaps of 1-3 logits. `margin` is written only when `margin_scale` is
set: margin = margin_scale x (strength if the pair has one, else rank_distance). The reward
stage (reward/records.py) reads `strength`, else `rank_distance`, as the pair's distance for its
own `--margin_scale`, and a `margin` as TRL does.

`weight` is the reviewer's reliability weight (0 = no better than chance, 1 = fully trusted);
`python -m reward --label_weighting reliability` multiplies each ranking's loss by it.

Held out of training, and counted by reason in the summary: rankings of gold items (they check
reviewers); of items whose flags wait for an admin (unless `include_flagged`) or were confirmed;
of disabled reviewers (with `exclude_disabled`); of reviewers under `min_reliability`. Written
answers are exported only once approved, never from an item flagged unsafe that is not cleared.
A tie makes no pair.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from ranktune.errors import InputError
from ranktune.jsonl import write_json_atomic, write_jsonl_atomic
from ranktune.runs import publish_dir

from labeling_ui.arena.export import ARENA_PAIRS_FILE, arena_export
from labeling_ui.questions import QUESTIONS
from labeling_ui.reliability import Assessment, assess
from labeling_ui.schema import APPROVED, CLEARED, CONFIRMED
from labeling_ui.store import LabelStore

RANKING_FIELDS = ("ranking_id", "item_id", "prompt", "answers", "ended", "ranks", "reviewer", "round", "policy",
                  "flagged", "weight", "question", "shown")
RANKING_EXTRAS = ("strength", "scores", "selection")  # pairwise rows, rating rows, chosen items
PAIR_FIELDS = ("prompt", "chosen", "rejected", "rank_distance", "question", "reviewer", "ranking_id", "weight")
PAIR_EXTRAS = ("strength", "margin")  # pairs of pairwise questions; every pair with margin_scale
RATING_FIELDS = ("item_id", "ranking_id", "prompt", "answers", "ended", "scores", "reviewer", "round", "policy",
                 "weight")
QUESTION_TYPES = tuple(QUESTIONS)
HELD_OUT = ("gold", "flagged_waiting_for_review", "flagged_confirmed", "disabled_reviewer", "low_reliability")


def question_of(ranking: dict) -> str:
    """The ranking's question type; rows from a store without question types are rankings."""
    return ranking.get("question") or "ranking"


def question_fields(ranking: dict) -> dict:
    """What the ranking's question type adds to its exported row (Question.export_fields): `strength`
    (pairwise), `scores` (rating), nothing for a ranking."""
    if ranking.get("response") is None:
        return {}
    return QUESTIONS[question_of(ranking)].export_fields(ranking["response"])


def ranking_pairs(ranking: dict, margin_scale: float | None = None) -> tuple[list[dict], int]:
    """Every (better, worse) answer pair of one ranking; and how many pairs had identical texts.

    Each pair carries `rank_distance`, and `strength` for a pairwise question; `margin` (TRL's
    field, in reward logits) only with `margin_scale`: margin_scale x (strength, else rank_distance).
    Two candidates can be the same text (short prompts, low temperature); such a pair teaches
    the reward model nothing and would fail the preference reader, so it is counted and dropped.
    """
    answers, ranks = ranking["answers"], ranking["ranks"]
    strength = QUESTIONS[question_of(ranking)].pair_strength(ranking.get("response")) if ranking.get("response") else None
    pairs, identical = [], 0
    for i in range(len(answers)):
        for j in range(len(answers)):
            if ranks[i] < ranks[j]:  # i is better; a tie (equal ranks) gives no pair
                if answers[i].strip() == answers[j].strip():
                    identical += 1
                    continue
                pair = {"prompt": ranking["prompt"], "chosen": answers[i], "rejected": answers[j],
                        "rank_distance": ranks[j] - ranks[i]}
                if strength is not None:
                    pair["strength"] = strength
                if margin_scale is not None:
                    pair["margin"] = margin_scale * (strength if strength is not None else pair["rank_distance"])
                pair |= {"question": question_of(ranking), "reviewer": ranking["reviewer"],
                         "ranking_id": ranking["ranking_id"], "weight": ranking.get("weight", 1.0)}
                pairs.append(pair)
    return pairs, identical


def rating_record(ranking: dict) -> dict:
    """A rating question's answer as ratings.jsonl has it: the raw scores, by candidate position."""
    values = {**ranking, "scores": question_fields(ranking)["scores"], "weight": ranking.get("weight", 1.0)}
    return {k: values[k] for k in RATING_FIELDS}


def _save_dataset(records: list[dict], folder: Path, fields: tuple[str, ...], extras: tuple[str, ...] = ()) -> None:
    """`fields` in every row; each of `extras` a column when some row has it (null in the others)."""
    import datasets

    columns = list(fields) + [f for f in extras if any(f in r for r in records)]
    datasets.Dataset.from_dict({c: [r.get(c) for r in records] for c in columns}).save_to_disk(str(folder))


def held_out_reason(r: dict, trust: dict, include_flagged: bool, exclude_disabled: bool,
                    min_reliability: float | None) -> str | None:
    """Why a ranking stays out of the training files (None: it goes in)."""
    if r["gold"]:
        return "gold"
    if r["flag_state"] == CONFIRMED:
        return "flagged_confirmed"
    if r["flag_state"] == "pending" and not include_flagged:
        return "flagged_waiting_for_review"
    if exclude_disabled and r["reviewer_disabled"]:
        return "disabled_reviewer"
    eta = trust[r["reviewer"]].reliability if r["reviewer"] in trust else None
    if min_reliability is not None and eta is not None and eta < min_reliability:
        return "low_reliability"
    return None


def consensus_records(kept: list[dict], assessment: Assessment) -> list[dict]:
    by_item: dict[int, list[dict]] = {}
    for r in kept:
        by_item.setdefault(r["item_id"], []).append(r)
    out = []
    for item_id, rs in sorted(by_item.items()):
        names = sorted({r["reviewer"] for r in rs})
        ranks = assessment.consensus.get(item_id)
        if len(names) < 2 or ranks is None:
            continue
        first = rs[0]
        out.append({"ranking_id": f"consensus-{item_id}", "item_id": item_id, "prompt": first["prompt"],
                    "answers": first["answers"], "ended": first["ended"], "ranks": ranks, "reviewer": "consensus",
                    "round": first["round"], "policy": first["policy"], "flagged": first["flagged"],
                    "reviewers": names, "n_reviewers": len(names)})
    return out


def export(store: LabelStore, out: Path, include_flagged: bool = False, exclude_disabled: bool = False,
           min_reliability: float | None = None, actor: str | None = None, margin_scale: float | None = None,
           ratings_as_rankings: bool = True) -> dict:
    """Write the export folder; returns the summary (also saved as summary.json)."""
    if margin_scale is not None and not (math.isfinite(margin_scale) and margin_scale >= 0):
        raise InputError(f"must be a finite number >= 0 (reward logits per unit of distance), got {margin_scale}",
                         field="margin_scale")
    rankings = store.rankings()
    if not rankings:
        raise InputError(f"nothing to export: no rankings submitted yet in {store.db.display()}")
    unknown = sorted({question_of(r) for r in rankings} - set(QUESTION_TYPES))
    if unknown:
        raise InputError(f"unknown question type(s) {', '.join(unknown)}: this export knows "
                         f"{', '.join(QUESTION_TYPES)}")
    work = [r for r in rankings if not r["gold"]]
    assessment = assess(work, [r for r in rankings if r["gold"]], store.gold())
    trust = {x.reviewer: x for x in assessment.reviewers}
    reasons = {r["ranking_id"]: held_out_reason(r, trust, include_flagged, exclude_disabled, min_reliability)
               for r in rankings}
    kept = [{**r, "weight": trust[r["reviewer"]].weight if r["reviewer"] in trust else 1.0}
            for r in rankings if reasons[r["ranking_id"]] is None]
    if not kept:
        held = {why: n for why in HELD_OUT if (n := sum(v == why for v in reasons.values()))}
        raise InputError(f"nothing to export: all {len(rankings)} rankings are held out ({held}); flagged items "
                         "wait for an admin's review (or add --include_flagged true)")
    ratings = [rating_record(r) for r in kept if "scores" in question_fields(r)]
    ranked = [r for r in kept if ratings_as_rankings or question_of(r) != "rating"]
    rows = [{k: r[k] for k in RANKING_FIELDS if k != "question"} | {"question": question_of(r)} | question_fields(r)
            | ({"selection": r["selection"]} if r.get("selection") else {}) for r in ranked]
    pairs, identical, tied = [], 0, 0
    per_question = {q: {"rankings": 0, "pairs": 0, "tied_pairs": 0, "held_out": 0} for q in QUESTION_TYPES}
    for r in rankings:
        if reasons[r["ranking_id"]] is not None:
            per_question[question_of(r)]["held_out"] += 1
    for r in ranked:
        p, n = ranking_pairs(r, margin_scale)
        k = len(r["ranks"])
        counts = per_question[question_of(r)]
        counts["rankings"] += 1
        counts["pairs"] += len(p)
        counts["tied_pairs"] += k * (k - 1) // 2 - len(p) - n
        pairs.extend(p)
        identical += n
        tied += k * (k - 1) // 2 - len(p) - n
    per_question["rating"]["ratings"] = len(ratings)
    consensus = consensus_records(ranked, assessment)
    demos, demo_held = _demonstrations(store, exclude_disabled)
    confirmed = store.confirmed_items()
    reviewers = [asdict(x) | {"warnings": list(x.warnings)} for x in assessment.reviewers]
    unassessed = sorted(x.reviewer for x in assessment.reviewers if x.reliability is None)
    summary = {"rankings": len(rows), "pairs": len(pairs), "ratings": len(ratings),
               "consensus_rankings": len(consensus), "demonstrations": len(demos), "comments": 0,
               "questions": {q: c for q, c in per_question.items() if c["rankings"] or c["held_out"]
                             or c.get("ratings")},
               "rankings_held_out": {why: sum(v == why for v in reasons.values()) for why in HELD_OUT},
               "items_waiting_for_flag_review": len({r["item_id"] for r in rankings if r["flag_state"] == "pending"}),
               "items_flag_confirmed": len(confirmed), "demonstrations_held_out": demo_held,
               "include_flagged": include_flagged, "exclude_disabled": exclude_disabled,
               "min_reliability": min_reliability, "margin_scale": margin_scale,
               "ratings_as_rankings": ratings_as_rankings, "identical_answer_pairs_left_out": identical,
               "tied_pairs": tied, "reviewers": sorted({r["reviewer"] for r in kept}),
               "rounds": sorted({r["round"] for r in kept}), "reliability": reviewers, "notes": []}
    if summary["items_waiting_for_flag_review"]:
        summary["notes"].append(f"{summary['items_waiting_for_flag_review']} flagged items wait for an admin's review "
                                "(admin tab, Flags)" + (": exported anyway (include_flagged)" if include_flagged else ""))
    if demo_held["unreviewed"]:
        summary["notes"].append(f"{demo_held['unreviewed']} written answers wait for an admin's approval")
    if min_reliability is not None and unassessed:
        summary["notes"].append(f"kept, too little overlap to estimate reliability: {', '.join(unassessed)}")
    if ratings and not ratings_as_rankings:
        summary["notes"].append(f"{len(ratings)} ratings are in ratings.jsonl only (ratings_as_rankings false): "
                                "the reward model will not learn from them")
    comments = store.comments()
    summary["comments"] = len(comments)
    arena, summary["arena"] = arena_export(store, exclude_disabled)
    if summary["arena"]["votes"]:
        summary["notes"].append(f"{summary['arena']['votes']} arena votes gave {len(arena)} pairs in arena_pairs.jsonl "
                                "(not in pairs.jsonl; see labeling_ui/arena/export.py)")
    with publish_dir(out) as tmp:
        write_jsonl_atomic(tmp / "rankings.jsonl", rows)
        write_jsonl_atomic(tmp / "pairs.jsonl", pairs)
        write_jsonl_atomic(tmp / "ratings.jsonl", ratings)
        write_jsonl_atomic(tmp / "consensus.jsonl", consensus)
        write_jsonl_atomic(tmp / "demonstrations.jsonl", demos)
        write_jsonl_atomic(tmp / "comments.jsonl", comments)
        write_jsonl_atomic(tmp / "flagged.jsonl", confirmed)
        write_jsonl_atomic(tmp / ARENA_PAIRS_FILE, arena)
        _save_dataset(rows, tmp / "rankings_ds", RANKING_FIELDS, RANKING_EXTRAS)
        _save_dataset(pairs, tmp / "pairs_ds", PAIR_FIELDS, PAIR_EXTRAS)
        write_json_atomic(tmp / "reviewers.json", reviewers)
        write_json_atomic(tmp / "summary.json", summary)
    if actor:
        store.record_action(actor, "export", str(out), rankings=len(rows), held_out=summary["rankings_held_out"])
    return summary


def _demonstrations(store: LabelStore, exclude_disabled: bool) -> tuple[list[dict], dict]:
    """Approved written answers as SFT records, and how many were held out, by reason."""
    states = store.flag_states()
    unsafe = store.unsafe_items()
    held = {"unreviewed": 0, "rejected": 0, "on_unsafe_items": 0, "disabled_reviewer": 0}
    out = []
    for d in store.demonstration_rows():
        if d["item_id"] in unsafe and states.get(d["item_id"]) != CLEARED:
            held["on_unsafe_items"] += 1
        elif exclude_disabled and d["reviewer_disabled"]:
            held["disabled_reviewer"] += 1
        elif d["decision"] != APPROVED:
            held["unreviewed" if d["decision"] is None else "rejected"] += 1
        else:
            out.append({"prompt": d["prompt"], "completion": d["completion"], "author": store.pseudonym(d["reviewer"])})
    return out, held
