"""`python -m labeling_ui export`: the store's rankings as the files later stages read.

runs/<run>/export/ (replaced as a whole, in one rename):
    rankings.jsonl        {ranking_id, item_id, prompt, answers, ended (the model stopped by itself, per answer),
                           ranks (1 = best, ties allowed), reviewer, round, policy, flagged, weight}
                                                                <- the reward stage reads this
    pairs.jsonl           {prompt, chosen, rejected, margin (rank distance), reviewer, ranking_id, weight}
                                                                <- TRL's RewardTrainer takes this as is
    consensus.jsonl       one ranking per item ranked by 2+ reviewers: the reliability model's consensus
                          order (reviewer "consensus", with the names that ranked it)
                                                                <- python -m reward --label_weighting consensus
    rankings_ds/, pairs_ds/   the same two as `datasets` folders (load_from_disk)
    demonstrations.jsonl  {prompt, completion, author}: written answers an admin approved (SFT format),
                          author a pseudonymous reviewer id
    comments.jsonl        {item_id, ranking_id, reviewer, text}: what reviewers wrote about items
    flagged.jsonl         items whose flags an admin confirmed: never training data, kept as what went wrong
    reviewers.json        each reviewer's reliability (labeling_ui/reliability.py)
    summary.json          counts, and what was held out and why

`weight` is the reviewer's reliability weight (0 = no better than chance, 1 = fully trusted);
`python -m reward --label_weighting reliability` multiplies each ranking's loss by it.

Held out of training, and counted by reason in the summary: rankings of gold items (they check
reviewers); of items whose flags wait for an admin (unless `include_flagged`) or were confirmed;
of disabled reviewers (with `exclude_disabled`); of reviewers under `min_reliability`. Written
answers are exported only once approved, never from an item flagged unsafe that is not cleared.
A tie makes no pair.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ranktune.errors import InputError
from ranktune.jsonl import write_json_atomic, write_jsonl_atomic
from ranktune.runs import publish_dir

from labeling_ui.reliability import Assessment, assess
from labeling_ui.schema import APPROVED, CLEARED, CONFIRMED
from labeling_ui.store import LabelStore

RANKING_FIELDS = ("ranking_id", "item_id", "prompt", "answers", "ended", "ranks", "reviewer", "round", "policy",
                  "flagged", "weight")
PAIR_FIELDS = ("prompt", "chosen", "rejected", "margin", "reviewer", "ranking_id", "weight")
HELD_OUT = ("gold", "flagged_waiting_for_review", "flagged_confirmed", "disabled_reviewer", "low_reliability")


def ranking_pairs(ranking: dict) -> tuple[list[dict], int]:
    """Every (better, worse) answer pair of one ranking; and how many pairs had identical texts.

    Two candidates can be the same text (short prompts, low temperature); such a pair teaches
    the reward model nothing and would fail the preference reader, so it is counted and dropped.
    """
    answers, ranks = ranking["answers"], ranking["ranks"]
    pairs, identical = [], 0
    for i in range(len(answers)):
        for j in range(len(answers)):
            if ranks[i] < ranks[j]:  # i is better; a tie (equal ranks) gives no pair
                if answers[i].strip() == answers[j].strip():
                    identical += 1
                    continue
                pairs.append({"prompt": ranking["prompt"], "chosen": answers[i], "rejected": answers[j],
                              "margin": ranks[j] - ranks[i], "reviewer": ranking["reviewer"],
                              "ranking_id": ranking["ranking_id"], "weight": ranking.get("weight", 1.0)})
    return pairs, identical


def _save_dataset(records: list[dict], folder: Path, fields: tuple[str, ...]) -> None:
    import datasets

    ds = datasets.Dataset.from_list(records) if records else datasets.Dataset.from_dict({f: [] for f in fields})
    ds.save_to_disk(str(folder))


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
           min_reliability: float | None = None, actor: str | None = None) -> dict:
    """Write the export folder; returns the summary (also saved as summary.json)."""
    rankings = store.rankings()
    if not rankings:
        raise InputError(f"nothing to export: no rankings submitted yet in {store.db.display()}")
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
    rows = [{k: r[k] for k in RANKING_FIELDS} for r in kept]
    pairs, identical = [], 0
    for r in kept:
        p, n = ranking_pairs(r)
        pairs.extend(p)
        identical += n
    consensus = consensus_records(kept, assessment)
    demos, demo_held = _demonstrations(store, exclude_disabled)
    confirmed = store.confirmed_items()
    reviewers = [asdict(x) | {"warnings": list(x.warnings)} for x in assessment.reviewers]
    unassessed = sorted(x.reviewer for x in assessment.reviewers if x.reliability is None)
    summary = {"rankings": len(rows), "pairs": len(pairs), "consensus_rankings": len(consensus),
               "demonstrations": len(demos), "comments": 0,
               "rankings_held_out": {why: sum(v == why for v in reasons.values()) for why in HELD_OUT},
               "items_waiting_for_flag_review": len({r["item_id"] for r in rankings if r["flag_state"] == "pending"}),
               "items_flag_confirmed": len(confirmed), "demonstrations_held_out": demo_held,
               "include_flagged": include_flagged, "exclude_disabled": exclude_disabled,
               "min_reliability": min_reliability, "identical_answer_pairs_left_out": identical,
               "tied_pairs": sum(len(r["ranks"]) * (len(r["ranks"]) - 1) // 2 for r in kept) - len(pairs) - identical,
               "reviewers": sorted({r["reviewer"] for r in rows}), "rounds": sorted({r["round"] for r in rows}),
               "reliability": reviewers, "notes": []}
    if summary["items_waiting_for_flag_review"]:
        summary["notes"].append(f"{summary['items_waiting_for_flag_review']} flagged items wait for an admin's review "
                                "(admin tab, Flags)" + (": exported anyway (include_flagged)" if include_flagged else ""))
    if demo_held["unreviewed"]:
        summary["notes"].append(f"{demo_held['unreviewed']} written answers wait for an admin's approval")
    if min_reliability is not None and unassessed:
        summary["notes"].append(f"kept, too little overlap to estimate reliability: {', '.join(unassessed)}")
    comments = store.comments()
    summary["comments"] = len(comments)
    with publish_dir(out) as tmp:
        write_jsonl_atomic(tmp / "rankings.jsonl", rows)
        write_jsonl_atomic(tmp / "pairs.jsonl", pairs)
        write_jsonl_atomic(tmp / "consensus.jsonl", consensus)
        write_jsonl_atomic(tmp / "demonstrations.jsonl", demos)
        write_jsonl_atomic(tmp / "comments.jsonl", comments)
        write_jsonl_atomic(tmp / "flagged.jsonl", confirmed)
        _save_dataset(rows, tmp / "rankings_ds", RANKING_FIELDS)
        _save_dataset(pairs, tmp / "pairs_ds", PAIR_FIELDS)
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
