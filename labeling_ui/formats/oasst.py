"""`oasst` (import): Open-Assistant message trees, the `*.trees.jsonl` files of the OpenAssistant/oasst1
and oasst2 datasets (https://huggingface.co/datasets/OpenAssistant/oasst1, "Data Structure": one tree
a line, `{message_tree_id, tree_state, prompt: <message>}`, each message `{message_id, text, role:
"prompter" | "assistant", rank, deleted, synthetic, model_name, replies: [<message>, ...]}`; `rank`
orders an assistant message among its siblings, 0 = best, null = not ranked).

Every prompter message with two or more ranked assistant replies becomes an item: the
conversation from the tree's root down to that message as chat messages (prompter -> user), its
ranked replies as the answers, and their `rank`s as one ranking by the reviewer `oasst-consensus`
(Open-Assistant's ranks merge many volunteers' rankings). Unranked and deleted replies are left
out; deleted messages end their branch. An answer's model is `model_name` for a synthetic reply,
else `oasst` (written by a volunteer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labeling_ui.formats.base import Format, ImportItem, check_text, dense, expect, make_label, provenance, whole
from ranktune.errors import InputError
from ranktune.jsonl import read_jsonl

REVIEWER = "oasst-consensus"
HUMAN = "oasst"
ROLES = {"prompter": "user", "assistant": "assistant"}


def _message(msg: Any, where: str, name: str, expected_role: str) -> dict:
    if not isinstance(msg, dict):
        raise InputError("expected a message object", where, field=name)
    role = msg.get("role")
    if role != expected_role:
        raise InputError(f"expected role '{expected_role}' here, got {role!r}", where, field=f"{name}.role")
    text = check_text(msg.get("text"), where, f"{name}.text")
    if not text.strip() and not msg.get("deleted"):
        raise InputError("is empty", where, field=f"{name}.text")
    replies = msg.get("replies")
    if replies is not None and not isinstance(replies, list):
        raise InputError("expected a list of messages", where, field=f"{name}.replies")
    return msg


def tree_items(obj: dict, where: str, question: str) -> list[ImportItem]:
    items: list[ImportItem] = []
    root = expect(obj, "prompt", dict, where, what="the tree's first (prompter) message")
    stack = [(root, [], "prompt", "prompter")]
    while stack:
        msg, history, name, role = stack.pop()
        msg = _message(msg, where, name, role)
        if msg.get("deleted"):
            continue
        conversation = history + [{"role": ROLES[role], "content": msg["text"]}]
        replies = msg.get("replies") or []
        child = "assistant" if role == "prompter" else "prompter"
        checked = [(j, _message(r, where, f"{name}.replies[{j}]", child)) for j, r in enumerate(replies)]
        if role == "prompter":
            ranked = [(j, r) for j, r in checked if r.get("rank") is not None and not r.get("deleted")]
            if len(ranked) >= 2:
                ranks = [whole(r["rank"], where, f"{name}.replies[{j}].rank", lo=0) for j, r in ranked]
                answers = [r["text"] for _, r in ranked]
                models = [r["model_name"] if r.get("synthetic") and isinstance(r.get("model_name"), str)
                          and r["model_name"].strip() else HUMAN for _, r in ranked]
                label = make_label(question, REVIEWER, dense(ranks), len(ranked), where, f"{name}.replies[].rank")
                items.append(ImportItem(conversation, answers, [True] * len(answers), models, [label], where,
                                        provenance("oasst", msg.get("message_id"),
                                                   [r.get("message_id") for _, r in ranked])))
        for j, r in reversed(checked):  # depth first, in the file's order
            stack.append((r, conversation, f"{name}.replies[{j}]", child))
    return items


class Oasst(Format):
    name = "oasst"
    title = "Open-Assistant message trees (oasst1/oasst2 *.trees.jsonl): rank 0 = best as one consensus ranking"
    reads = True

    def read(self, path: Path, question: str) -> list[ImportItem]:
        trees = read_jsonl(path, lambda obj, p, line: tree_items(obj, f"{p}:{line}", question),
                           "Open-Assistant message trees")
        return [item for tree in trees for item in tree]


FORMAT = Oasst()
