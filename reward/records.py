"""Preference data of every accepted shape -> `Ranking`s, the unit the reward model learns from.

A ranking is K answers to one prompt with dense ranks (1 = best, ties share a rank). It yields
every (better, worse) pair of answers; a tie yields no pair. A plain pair is a ranking of two.
Pairs exported from one ranking (same `ranking_id`) are put back together, so that all pairs of a
ranking are scored in the same batch (InstructGPT, section 3.5: split apart, they overfit).

Accepted records, one JSON object a line (kinds may be mixed in one file; other fields are ignored):
- ranking: {ranking_id?, prompt, answers: [str, ...], ranks: [int, ...], reviewer?, flagged?, weight?,
           strength?}
- pair:    {prompt, chosen, rejected, strength?, rank_distance?, margin?, reviewer?, ranking_id?, weight?}
           with plain-text or chat answers (TRL's conversational format), or an implicit prompt (chosen
           and rejected are whole conversations, or whole HH-RLHF transcripts, that differ only in the
           last turn).
`weight` (a number >= 0) is the reviewer's reliability, 0 = unreliable, 1 = fully trusted; only
`label_weighting: reliability` uses it. A labeling export folder also holds consensus.jsonl: ranking
records (reviewer "consensus") of the items ranked by two or more reviewers.

Each pair has a distance, what `--margin_scale` multiplies into a margin (reward/trainer.py): the
reviewer's `strength` (a pairwise question's "how much better", 1-3; on a ranking record only with
two answers, 0 = a tie), else `rank_distance`, else for a ranking how many ranks apart the two are,
else 1. A pair's `margin` is TRL's field, read as TRL's RewardTrainer reads it: already in reward
logits, subtracted from that pair's score difference as it is (it is never a distance; the export
writes one only when asked, `labeling_ui export --margin_scale`). Exports made before the export
wrote `rank_distance` put the rank distance in `margin`: export such labels again.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ranktune.errors import InputError
from ranktune.jsonl import require_messages, require_str
from ranktune.prompting import prompt_text
from ranktune.records import load_records, preference

HH_TURN = re.compile(r"\n\n(Human|Assistant):")
HH_LAST_ASSISTANT = "\n\nAssistant:"


@dataclass
class Ranking:
    prompt: str | list[dict]
    answers: list[str]
    pairs: list[tuple[int, int, float]]  # (better, worse, distance) as answer indices: strength or rank distance
    ranks: list[int] | None  # dense, 1 = best; None when only an incomplete set of pairs is known
    reviewer: str | None = None
    ranking_id: str | None = None
    where: str = ""  # file:line, for messages
    ended: list[bool] | None = None  # per answer: the model stopped by itself (None = all did)
    weight: float = 1.0  # the reviewer's reliability: this ranking's share in the loss
    margins: list[float | None] | None = None  # per pair, the record's own `margin` (reward logits); None: none

    def pair_margins(self) -> list[float | None]:
        return list(self.margins) if self.margins is not None else [None] * len(self.pairs)

    def answer_ended(self) -> list[bool]:
        return list(self.ended) if self.ended is not None else [True] * len(self.answers)

    @property
    def prompt_key(self) -> str:
        return prompt_text(self.prompt).strip()


@dataclass
class DataStats:
    records: int = 0
    rankings: int = 0
    pairs: int = 0
    tied_pairs: int = 0
    identical_answer_pairs_left_out: int = 0
    flagged_rankings_left_out: int = 0
    rankings_without_pairs: int = 0
    records_with_weight: int = 0
    zero_weight_rankings: int = 0
    zero_weight_rankings_left_out: int = 0  # of training, by label_weighting reliability (reward/train.py)
    pairs_with_strength: int = 0  # their distance is the reviewer's strength (pairwise questions)
    pairs_with_own_margin: int = 0  # a `margin` field, in reward logits, used as it is
    answers_per_ranking: dict = field(default_factory=dict)


# ---------------------------------------------------------------- record validators


def _prompt(obj: dict, path: Path, lineno: int) -> str | list[dict]:
    if "prompt" not in obj:
        raise InputError("missing", path, lineno, "prompt")
    if isinstance(obj["prompt"], list):
        return require_messages(obj, "prompt", path, lineno)
    return require_str(obj, "prompt", path, lineno)


def _weight(obj: dict, path: Path, lineno: int, rec: dict) -> dict:
    if obj.get("weight") is not None:
        w = obj["weight"]
        # bool is an int in Python, and `true` for a weight is a broken export, not 1.0
        if not isinstance(w, (int, float)) or isinstance(w, bool):
            raise InputError(f"expected a number >= 0, got {type(w).__name__}", path, lineno, "weight")
        try:
            w = float(w)
        except OverflowError:  # an integer too large for a float
            w = math.inf
        if not (math.isfinite(w) and w >= 0):
            raise InputError(f"expected a finite number >= 0, got {obj['weight']}", path, lineno, "weight")
        rec["weight"] = w
    return rec


def _number(obj: dict, name: str, path: Path, lineno: int, least: float, above: bool = False) -> float | None:
    """A finite number >= least (> least with `above`) in obj[name], or None when it is absent or null."""
    if obj.get(name) is None:
        return None
    v = obj[name]
    bound = f"{'>' if above else '>='} {least:g}"
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise InputError(f"expected a number {bound}, got {type(v).__name__}", path, lineno, name)
    try:
        v = float(v)
    except OverflowError:  # an integer too large for a float
        v = math.inf
    if not math.isfinite(v) or v < least or (above and v == least):
        raise InputError(f"expected a finite number {bound}, got {obj[name]}", path, lineno, name)
    return v


def ranking_record(obj: dict, path: Path, lineno: int) -> dict:
    """A K-way ranking: K >= 2 answers, one dense rank per answer (1 = best).

    An answer may be empty only where `ended` says the model stopped there by itself: a policy that
    answers nothing gives the labeling app an empty answer, and reviewers rank it like any other.
    Without `ended`, an empty answer is a broken record."""
    prompt = _prompt(obj, path, lineno)
    answers = obj.get("answers")
    if not isinstance(answers, list) or len(answers) < 2:
        raise InputError("expected a list of at least 2 answers", path, lineno, "answers")
    ended = obj.get("ended")
    if ended is not None and (not isinstance(ended, list) or len(ended) != len(answers)
                              or not all(isinstance(e, bool) for e in ended)):
        raise InputError("expected one true/false per answer (did the model stop by itself)", path, lineno, "ended")
    for i in range(len(answers)):
        if not isinstance(answers[i], str):
            raise InputError(f"expected a string, got {type(answers[i]).__name__}", path, lineno, f"answers[{i}]")
        if not answers[i].strip() and not (ended and ended[i]):
            raise InputError("is empty (allowed only where `ended` says the model stopped there)",
                             path, lineno, f"answers[{i}]")
    ranks = obj.get("ranks")
    if not isinstance(ranks, list):
        raise InputError("missing or not a list (one rank per answer, 1 = best)", path, lineno, "ranks")
    if len(ranks) != len(answers):
        raise InputError(f"has {len(ranks)} ranks for {len(answers)} answers (need one per answer)",
                         path, lineno, "ranks")
    if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks):
        raise InputError(f"ranks must be whole numbers >= 1 (got {ranks})", path, lineno, "ranks")
    if max(ranks) > len(ranks) or sorted(set(ranks)) != list(range(1, max(ranks) + 1)):
        raise InputError(f"ranks must be dense, 1..N with no gaps; ties share a rank (got {ranks})",
                         path, lineno, "ranks")
    rec = {"kind": "ranking", "prompt": prompt, "answers": answers, "ranks": ranks,
           "where": f"{path}:{lineno}"}
    strength = _number(obj, "strength", path, lineno, 0)
    if strength is not None:  # a pairwise question: how much better the better of the two answers is
        if len(answers) != 2:
            raise InputError(f"is a pairwise question's answer: it needs 2 answers, not {len(answers)}",
                             path, lineno, "strength")
        if (strength == 0) != (ranks[0] == ranks[1]):
            raise InputError(f"is {obj['strength']} but the ranks are {ranks}: 0 (about the same) goes with a tie "
                             "[1, 1], more with [1, 2] or [2, 1]", path, lineno, "strength")
        rec["strength"] = strength
    if ended is not None:  # the export says which answers were cut off at max_new_tokens
        rec["ended"] = ended
    for name, kind in (("ranking_id", (str, int)), ("reviewer", str), ("flagged", bool)):
        if obj.get(name) is not None:
            if not isinstance(obj[name], kind) or (name == "ranking_id" and isinstance(obj[name], bool)):
                raise InputError(f"has the wrong type ({type(obj[name]).__name__})", path, lineno, name)
            rec[name] = str(obj[name]) if name == "ranking_id" else obj[name]
    return _weight(obj, path, lineno, rec)


def _split_conversation(messages: list[dict], path: Path, lineno: int, field: str) -> tuple[list[dict], str]:
    if messages[-1]["role"] != "assistant":
        raise InputError("must end with an assistant message (the answer)", path, lineno, field)
    return messages[:-1], messages[-1]["content"]


def _split_hh(text: str, path: Path, lineno: int, field: str) -> tuple[str, str]:
    cut = text.rfind(HH_LAST_ASSISTANT)
    if cut < 0:
        raise InputError("expected an HH-RLHF transcript ending in '\\n\\nAssistant: <answer>' "
                         "(or give an explicit 'prompt')", path, lineno, field)
    cut += len(HH_LAST_ASSISTANT)
    return text[:cut], text[cut:].strip()


def pair_record(obj: dict, path: Path, lineno: int) -> dict:
    """A preference pair in any of the accepted shapes, normalised to plain-text answers."""
    obj = dict(obj)
    chat = [f for f in ("chosen", "rejected") if isinstance(obj.get(f), list)]
    if chat:
        if len(chat) == 1:
            raise InputError("chosen and rejected must both be text or both be chat messages", path, lineno, chat[0])
        heads = {}
        for f in ("chosen", "rejected"):
            heads[f], obj[f] = _split_conversation(require_messages(obj, f, path, lineno), path, lineno, f)
        if heads["chosen"] != heads["rejected"]:
            raise InputError("chosen and rejected must share every message but the last", path, lineno, "rejected")
        if "prompt" in obj:
            obj["prompt"] = ([{"role": "user", "content": obj["prompt"]}] if isinstance(obj["prompt"], str)
                             else _prompt(obj, path, lineno)) + heads["chosen"]
        elif heads["chosen"]:
            obj["prompt"] = heads["chosen"]
    elif "prompt" not in obj and isinstance(obj.get("chosen"), str) and HH_LAST_ASSISTANT in obj["chosen"]:
        # Implicit-prompt HH-RLHF: two whole transcripts that differ only after the last "Assistant:".
        prompt, obj["chosen"] = _split_hh(obj["chosen"], path, lineno, "chosen")
        other, obj["rejected"] = _split_hh(require_str(obj, "rejected", path, lineno), path, lineno, "rejected")
        if other != prompt:
            raise InputError("chosen and rejected must share the dialogue before the last 'Assistant:'",
                             path, lineno, "rejected")
        obj["prompt"] = prompt
    rec = preference(obj, path, lineno)
    rec.update(kind="pair", where=f"{path}:{lineno}")
    strength = _number(obj, "strength", path, lineno, 0, above=True)  # 0 would be a tie: no pair
    rank_distance = _number(obj, "rank_distance", path, lineno, 0, above=True)
    if strength is not None:
        rec["strength"] = strength
    rec["distance"] = strength if strength is not None else rank_distance if rank_distance is not None else 1.0
    for name in ("ranking_id", "reviewer"):  # ids may be numbers; metrics sort and group them as text
        if rec.get(name) is not None:
            rec[name] = str(rec[name])
    return _weight(obj, path, lineno, rec)


def any_record(obj: dict, path: Path, lineno: int) -> dict:
    if "answers" in obj or "ranks" in obj:
        return ranking_record(obj, path, lineno)
    return pair_record(obj, path, lineno)


# ---------------------------------------------------------------- sources -> rankings


def hh_to_messages(text: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:' -> chat messages (user, assistant, user)."""
    parts = HH_TURN.split(text)  # ['', 'Human', ' a', 'Assistant', ' b', ...]
    messages = [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
                for who, body in zip(parts[1::2], parts[2::2])]
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()  # the open "Assistant:" the answer continues
    return messages


def looks_like_hh(prompt) -> bool:
    return isinstance(prompt, str) and prompt.startswith("\n\nHuman:") and prompt.rstrip().endswith("Assistant:")


def resolve_source(data: str | None, export_dir: Path, consensus: bool = False) -> str:
    """The file or dataset name to read: a labeling export folder means its rankings (or pairs), or
    with `consensus` its consensus.jsonl. A file is read as it is, whatever `consensus` says."""
    if data is None:
        if not export_dir.is_dir():
            raise InputError("no labeling export here: run `make label` and export, or set --data", export_dir)
        data = str(export_dir)
    folder = Path(data)
    if folder.is_dir() and consensus:
        if (folder / "consensus.jsonl").is_file():
            return str(folder / "consensus.jsonl")
        # falling back to rankings.jsonl would train on every reviewer's labels under a consensus name
        raise InputError("folder has no consensus.jsonl, which label_weighting consensus trains on: re-export the "
                         "labels (`make export`), or set --data to a rankings file", folder)
    if folder.is_dir():
        for name in ("rankings.jsonl", "pairs.jsonl"):
            if (folder / name).is_file():
                return str(folder / name)
        raise InputError("folder has no rankings.jsonl or pairs.jsonl (expected a labeling export)", folder)
    return data


def read_rankings(source: str, skip_flagged: bool = False, convert_hh: bool = True,
                  require_weight: bool = False) -> tuple[list[Ranking], DataStats]:
    """`require_weight`: every record must carry `weight` (a missing one is an error, not 1.0)."""
    records = load_records(source, any_record, "rankings or preference pairs (prompt, chosen, rejected)")
    if require_weight:
        missing = next((rec for rec in records if "weight" not in rec), None)
        if missing is not None:
            raise InputError("missing: label_weighting reliability needs every record's reviewer weight (re-export "
                             "the labels, or set label_weighting all)", missing["where"], field="weight")
    stats = DataStats(records=len(records), records_with_weight=sum("weight" in rec for rec in records))
    rankings: list[Ranking] = []
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in records:
        if rec["kind"] == "ranking":
            if skip_flagged and rec.get("flagged"):
                stats.flagged_rankings_left_out += 1
                continue
            rankings.append(_from_ranking(rec, stats))
        elif rec.get("ranking_id") is not None:
            grouped[(rec["ranking_id"], prompt_text(rec["prompt"]))].append(rec)
        else:
            rankings.append(Ranking(rec["prompt"], [rec["chosen"], rec["rejected"]],
                                    [(0, 1, rec["distance"])], [1, 2], rec.get("reviewer"), None, rec["where"],
                                    weight=rec.get("weight", 1.0),
                                    margins=[rec["margin"]] if "margin" in rec else None))
            stats.pairs_with_strength += "strength" in rec
            stats.pairs_with_own_margin += "margin" in rec
    for recs in grouped.values():
        rankings.append(_from_pairs(recs))
        stats.pairs_with_strength += sum("strength" in rec for rec in recs)
        stats.pairs_with_own_margin += sum("margin" in rec for rec in recs)
    for r in rankings:
        if convert_hh and looks_like_hh(r.prompt):
            r.prompt = hh_to_messages(r.prompt)
        k = str(len(r.answers))
        stats.answers_per_ranking[k] = stats.answers_per_ranking.get(k, 0) + 1
    stats.rankings = len(rankings)
    stats.pairs = sum(len(r.pairs) for r in rankings)
    stats.rankings_without_pairs = sum(not r.pairs for r in rankings)
    stats.zero_weight_rankings = sum(r.weight == 0 for r in rankings)
    return rankings, stats


def ranking_pairs(answers: list[str], ranks: list[int]) -> tuple[list[tuple[int, int, float]], int, int]:
    """All (better, worse, rank distance) pairs; and how many were ties, how many identical texts."""
    pairs, ties, identical = [], 0, 0
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            if ranks[i] == ranks[j]:
                ties += 1
                continue
            if answers[i].strip() == answers[j].strip():
                identical += 1  # same text, different ranks: teaches nothing (the export drops these too)
                continue
            better, worse = (i, j) if ranks[i] < ranks[j] else (j, i)
            pairs.append((better, worse, float(abs(ranks[i] - ranks[j]))))
    return pairs, ties, identical


def _from_ranking(rec: dict, stats: DataStats) -> Ranking:
    pairs, ties, identical = ranking_pairs(rec["answers"], rec["ranks"])
    if "strength" in rec:  # the reviewer said how much better: that, not the rank distance (always 1 here)
        pairs = [(i, j, rec["strength"]) for i, j, _d in pairs]
        stats.pairs_with_strength += len(pairs)
    stats.tied_pairs += ties
    stats.identical_answer_pairs_left_out += identical
    return Ranking(rec["prompt"], list(rec["answers"]), pairs, list(rec["ranks"]), rec.get("reviewer"),
                   rec.get("ranking_id"), rec["where"], rec.get("ended"), rec.get("weight", 1.0))


def _from_pairs(recs: list[dict]) -> Ranking:
    """Pairs that share a ranking_id -> one ranking over their distinct answers, and their one weight."""
    for rec in recs[1:]:
        if rec.get("weight") != recs[0].get("weight"):
            raise InputError(f"is {rec.get('weight')}, but {recs[0]['where']}, a pair of the same ranking "
                             f"'{rec['ranking_id']}', has {recs[0].get('weight')} (one ranking has one weight)",
                             rec["where"], field="weight")
    answers: list[str] = []
    index: dict[str, int] = {}
    pairs = []
    for rec in recs:
        for text in (rec["chosen"], rec["rejected"]):
            if text not in index:
                index[text] = len(answers)
                answers.append(text)
        pairs.append((index[rec["chosen"]], index[rec["rejected"]], rec["distance"]))
    reviewers = {rec.get("reviewer") for rec in recs}
    margins = [rec.get("margin") for rec in recs] if any("margin" in rec for rec in recs) else None
    return Ranking(recs[0]["prompt"], answers, pairs, ranks_from_pairs(len(answers), pairs),
                   reviewers.pop() if len(reviewers) == 1 else None, recs[0]["ranking_id"], recs[0]["where"],
                   weight=recs[0].get("weight", 1.0), margins=margins)


def ranks_from_pairs(n: int, pairs: list[tuple[int, int, float]]) -> list[int] | None:
    """Dense ranks that give exactly these pairs, or None (a cycle, or pairs missing from the order)."""
    ranks = [1] * n
    for _ in range(n):  # longest chain of betters above each answer; settles within n rounds unless cyclic
        changed = False
        for i, j, _d in pairs:
            if ranks[j] <= ranks[i]:
                ranks[j], changed = ranks[i] + 1, True
        if not changed:
            break
    else:
        return None
    if sorted(set(ranks)) != list(range(1, max(ranks) + 1)):
        return None
    implied = {(i, j) for i in range(n) for j in range(n) if ranks[i] < ranks[j]}
    return ranks if implied == {(i, j) for i, j, _d in pairs} else None
