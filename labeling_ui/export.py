"""`python -m labeling_ui export`: the store's rankings as the files later stages read.

runs/<run>/export/ (replaced as a whole, in one rename):
    rankings.jsonl        {ranking_id, prompt, answers, ended (the model stopped by itself, per answer),
                           ranks (1 = best, ties allowed), reviewer, round, policy, flagged}
                                                                <- the reward stage reads this
    pairs.jsonl           {prompt, chosen, rejected, margin (rank distance), reviewer, ranking_id}
                                                                <- TRL's RewardTrainer takes this as is
    rankings_ds/, pairs_ds/   the same two as `datasets` folders (load_from_disk)
    demonstrations.jsonl  {prompt, completion}: answers reviewers wrote themselves (SFT format)
    summary.json          counts, and what was left out and why

A tie makes no pair. Items any reviewer flagged are left out unless `include_flagged`.
"""

from __future__ import annotations

from pathlib import Path

from ranktune.errors import InputError
from ranktune.jsonl import write_json_atomic, write_jsonl_atomic
from ranktune.runs import publish_dir

from labeling_ui.store import LabelStore

RANKING_FIELDS = ("ranking_id", "prompt", "answers", "ended", "ranks", "reviewer", "round", "policy", "flagged")


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
                              "ranking_id": ranking["ranking_id"]})
    return pairs, identical


PAIR_FIELDS = ("prompt", "chosen", "rejected", "margin", "reviewer", "ranking_id")


def _save_dataset(records: list[dict], folder: Path, fields: tuple[str, ...]) -> None:
    import datasets

    ds = datasets.Dataset.from_list(records) if records else datasets.Dataset.from_dict({f: [] for f in fields})
    ds.save_to_disk(str(folder))


def export(store: LabelStore, out: Path, include_flagged: bool = False) -> dict:
    """Write the export folder; returns the summary (also saved as summary.json)."""
    rankings = store.rankings()
    if not rankings:
        raise InputError(f"nothing to export: no rankings submitted yet in {store.db.display()}")
    kept = [r for r in rankings if include_flagged or not r["flagged"]]
    rows = [{k: r[k] for k in RANKING_FIELDS} for r in kept]
    pairs, identical = [], 0
    for r in kept:
        p, n = ranking_pairs(r)
        pairs.extend(p)
        identical += n
    demos = [{"prompt": d["prompt"], "completion": d["completion"]} for d in store.demonstrations()]
    summary = {"rankings": len(rows), "pairs": len(pairs), "demonstrations": len(demos),
               "flagged_rankings_left_out": len(rankings) - len(kept), "include_flagged": include_flagged,
               "identical_answer_pairs_left_out": identical,
               "tied_pairs": sum(len(r["ranks"]) * (len(r["ranks"]) - 1) // 2 for r in kept) - len(pairs) - identical,
               "reviewers": sorted({r["reviewer"] for r in rows}), "rounds": sorted({r["round"] for r in rows})}
    if not rows:
        raise InputError(f"nothing to export: all {len(rankings)} rankings are on flagged items "
                         "(add --include_flagged true to export them)")
    with publish_dir(out) as tmp:
        write_jsonl_atomic(tmp / "rankings.jsonl", rows)
        write_jsonl_atomic(tmp / "pairs.jsonl", pairs)
        write_jsonl_atomic(tmp / "demonstrations.jsonl", demos)
        _save_dataset(rows, tmp / "rankings_ds", RANKING_FIELDS)
        _save_dataset(pairs, tmp / "pairs_ds", PAIR_FIELDS)
        write_json_atomic(tmp / "summary.json", summary)
    return summary
