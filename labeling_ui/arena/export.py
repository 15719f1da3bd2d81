"""Arena votes as preference pairs: `arena_pairs.jsonl` in the labeling export.

    {prompt: [chat messages], chosen, rejected, reviewer, source: "arena", model_chosen, model_rejected,
     ranking_id: "arena-<turn id>", conversation_id, turn, weight: 1.0}

`python -m reward --data runs/<run>/export/arena_pairs.jsonl` reads it as it is (the `pair`
format with a chat prompt, reward/records.py). `weight` is 1.0: the reliability estimate
covers rankings, not arena votes.

Which turns make a pair (the history rule). Each side of a conversation answers its own
conversation: side A's turn n answers [u1, a1, u2, a2, ..., un], side B's [u1, b1, ..., un]. A
preference pair says "for THIS prompt, chosen is better than rejected", so a vote makes a pair
only when both answers answered the same messages: when the two sides' histories before the
turn are identical. That is always true of turn 1 (prompt [u1]); of a later turn only if every
earlier answer of A was word for word B's. A vote on a later turn of a conversation whose
answers differed (almost every one) compares two answers to two different conversations: it
still counts on the leaderboard (which compares models, not answers) but makes no pair, and is
counted in summary.json as `no_pair.diverged_history`. Transplanting the rejected answer into
the chosen side's history instead would train the reward model on an answer the reviewer never
saw in that context (B's answer may refer to what B said before), so it is not done.

No pair either from a tie or a both_bad vote, from two answers with the same text, or (export
--exclude_disabled) from a disabled reviewer; each is counted under `no_pair`.

The reward stage reads one file. To train on rankings and arena votes together, concatenate
them (record kinds may be mixed in one file):

    cat runs/<run>/export/rankings.jsonl runs/<run>/export/arena_pairs.jsonl > runs/<run>/all-labels.jsonl
    python -m reward --data runs/<run>/all-labels.jsonl
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labeling_ui.arena.schema import OUTCOMES

if TYPE_CHECKING:
    from labeling_ui.arena.store import ArenaStore, Conversation
    from labeling_ui.store import LabelStore

ARENA_PAIRS_FILE = "arena_pairs.jsonl"
ARENA_PAIR_FIELDS = ("prompt", "chosen", "rejected", "reviewer", "source", "model_chosen", "model_rejected",
                     "ranking_id", "conversation_id", "turn", "weight")
NO_PAIR = ("tie", "both_bad", "diverged_history", "identical_answers", "disabled_reviewer")


def turn_prompts(conversation: "Conversation", turn: int) -> tuple[list[dict], list[dict]]:
    """The messages side A and side B answered at `turn` (1-based): each side's own history and the
    turn's user message."""
    before = conversation.turns[:turn - 1]
    message = conversation.turns[turn - 1].message
    heads = []
    for side in ("a", "b"):
        messages = []
        for t in before:
            messages += [{"role": "user", "content": t.message},
                         {"role": "assistant", "content": t.answer_a if side == "a" else t.answer_b}]
        heads.append(messages + [{"role": "user", "content": message}])
    return heads[0], heads[1]


def arena_pairs(arena: "ArenaStore", exclude_disabled: bool = False) -> tuple[list[dict], dict]:
    """The pairs arena votes make (see the module docstring), and the counts for summary.json."""
    disabled = {r["reviewer"] for r in arena.vote_records() if r["reviewer_disabled"]}
    pairs: list[dict] = []
    outcomes = {o: 0 for o in OUTCOMES}
    no_pair = {k: 0 for k in NO_PAIR}
    conversations = arena.voted_conversations()
    models: set[str] = set()
    for conv in conversations:
        for t in conv.turns:
            if t.vote is None:
                continue
            outcomes[t.vote] += 1
            models |= {conv.model_a, conv.model_b}
            if t.vote in ("tie", "both_bad"):
                no_pair[t.vote] += 1
                continue
            if exclude_disabled and conv.reviewer in disabled:
                no_pair["disabled_reviewer"] += 1
                continue
            prompt_a, prompt_b = turn_prompts(conv, t.turn)
            if prompt_a != prompt_b:
                no_pair["diverged_history"] += 1
                continue
            if t.answer_a.strip() == t.answer_b.strip():
                no_pair["identical_answers"] += 1
                continue
            a_won = t.vote == "a"
            pairs.append({"prompt": prompt_a, "chosen": t.answer_a if a_won else t.answer_b,
                          "rejected": t.answer_b if a_won else t.answer_a, "reviewer": conv.reviewer,
                          "source": "arena", "model_chosen": conv.model_a if a_won else conv.model_b,
                          "model_rejected": conv.model_b if a_won else conv.model_a,
                          "ranking_id": f"arena-{t.id}", "conversation_id": conv.id, "turn": t.turn, "weight": 1.0})
    summary = {"votes": sum(outcomes.values()), "outcomes": outcomes, "pairs": len(pairs), "no_pair": no_pair,
               "conversations": len(conversations), "models": sorted(models)}
    return pairs, summary


def arena_export(store: "LabelStore", exclude_disabled: bool = False) -> tuple[list[dict], dict]:
    """`arena_pairs` of a label store; nothing (and no tables made) when it has no arena yet."""
    if "arena_votes" not in store.db.tables():
        return [], {"votes": 0, "outcomes": {o: 0 for o in OUTCOMES}, "pairs": 0, "no_pair": {k: 0 for k in NO_PAIR},
                    "conversations": 0, "models": []}
    from labeling_ui.arena.store import ArenaStore

    return arena_pairs(ArenaStore(store), exclude_disabled)
