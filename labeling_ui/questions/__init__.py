"""Question types, one module each (see base.py): every module here defining `QUESTION` is one."""

from __future__ import annotations

import importlib
import pkgutil

from labeling_ui.questions.base import Question, Reply
from ranktune.errors import InputError

QUESTIONS: dict[str, Question] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _q = getattr(importlib.import_module(f"{__name__}.{_info.name}"), "QUESTION", None)
    if _q is not None:
        QUESTIONS[_q.name] = _q


def question(name: str) -> Question:
    try:
        return QUESTIONS[name]
    except KeyError:
        raise InputError(f"unknown question type '{name}'; known: {', '.join(sorted(QUESTIONS))}",
                         field="question") from None


def page_js() -> str:
    return "\n".join(q.js for q in QUESTIONS.values())


__all__ = ["QUESTIONS", "Question", "Reply", "question", "page_js"]
