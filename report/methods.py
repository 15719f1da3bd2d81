"""The report's "PPO and the alternatives" section: every way the run tuned its SFT policy — PPO,
and DPO, RLOO, GRPO from `python -m alternatives` — on the same held-out evaluation.

Each method's metrics.json carries the `eval` block of `ranktune.policy_eval.compare_policies`
(PPO's names: `sft_*` is the starting policy, `ppo_*` the tuned one, whatever the method).
"""

from __future__ import annotations

import html
from pathlib import Path

from report.figures import gains_against_kl
from report.html import _img, _json, _num, _table, _td

ALTERNATIVES = ("dpo", "rloo", "grpo")
LABELS = {"ppo": "PPO (ours)", "dpo": "DPO (TRL)", "rloo": "RLOO (TRL)", "grpo": "GRPO (TRL)"}


def ppo_folder(run: Path) -> Path | None:
    """The run's PPO policy: rlhf/ when the stage was run by hand, else the last loop round's."""
    if (run / "rlhf" / "metrics.json").is_file():
        return run / "rlhf"
    rounds = sorted((p for p in (run / "rounds").glob("round-*") if p.name[len("round-"):].isdigit()
                     and (p / "rlhf" / "metrics.json").is_file()), key=lambda p: int(p.name[len("round-"):]))
    return rounds[-1] / "rlhf" if rounds else None


def find_methods(run: Path) -> list[dict]:
    """{name, folder, metrics} of every tuned policy present, PPO first; a folder without metrics is skipped."""
    found = []
    folders = [("ppo", ppo_folder(run))] + [(m, run / m) for m in ALTERNATIVES]
    for name, folder in folders:
        metrics = _json(folder / "metrics.json") if folder is not None else None
        if isinstance(metrics, dict):
            found.append({"name": name, "folder": folder, "metrics": metrics, "eval": metrics.get("eval") or {}})
    return found


def _arrow(ev: dict, key: str, digits: int = 3) -> str:
    start, tuned = ev.get(f"sft_{key}"), ev.get(f"ppo_{key}")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (start, tuned)):
        return "–"
    cls = "good" if tuned > start else "bad" if tuned < start else ""
    return f"{_num(start, digits)} → <span class='{cls}'>{_num(tuned, digits)}</span>"


def _row(m: dict) -> list[str]:
    ev, metrics = m["eval"], m["metrics"]
    gold = _arrow(ev, "gold")
    if isinstance(ev.get("gold_gain_se"), float) and gold != "–":
        gold += f" <span class='muted'>(gain ± {_num(ev['gold_gain_se'])})</span>"
    prompts = f"{_num(ev.get('prompts'))} × {_num(ev.get('samples_per_prompt', 1))}" if ev else "–"
    seconds = metrics.get("train_seconds")
    return [_td(html.escape(LABELS.get(m["name"], m["name"]))), _td(prompts, "num"), _td(_arrow(ev, "score"), "num"),
            _td(gold, "num"), _td(_num(ev.get("kl_to_sft")), "num"), _td(_num(ev.get("win_rate_vs_sft"), 2), "num"),
            _td(_arrow(ev, "ended", 2), "num"), _td(_arrow(ev, "words", 1), "num"),
            _td(f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "–", "num")]


def methods_section(run: Path, figures: Path) -> str:
    methods = find_methods(run)
    if not methods:
        return "<p class='muted'>No tuned policy in this run.</p>"
    header = ["method", "held-out prompts × answers", "reward-model score (SFT → tuned)",
              "gold score (SFT → tuned)", "KL to SFT", "win rate vs SFT", "answers that ended", "words per answer",
              "training (s)"]
    out = [_table(header, [_row(m) for m in methods])]
    notes = ["Each method is judged by the same function (ranktune.policy_eval) on held-out prompts no method "
             "trained on: the tuned and the SFT policy each answer every prompt. Each row samples its own SFT "
             "answers, with a fixed seed, so rows evaluated with the same prompts and settings share them. "
             "KL is in nats per answer. DPO learns from the labels' pairs alone; PPO, RLOO and GRPO from the "
             "reward model."]
    no_rm = [LABELS.get(m["name"], m["name"]) for m in methods if m["eval"] and "ppo_score" not in m["eval"]]
    if no_rm:
        notes.append(f"No reward model scored {', '.join(no_rm)}: those rows have gold score, KL, ended and "
                     "words only.")
    prompts = {(m["eval"].get("prompts"), m["eval"].get("samples_per_prompt")) for m in methods if m["eval"]}
    if len(prompts) > 1:
        notes.append("The methods were evaluated on different numbers of held-out prompts (max_eval_prompts) or "
                     "answers: compare their rows with care.")
    settings = {tuple(sorted((m["metrics"].get("eval_settings") or {}).items())) for m in methods
                if m["name"] != "ppo" and m["eval"]}
    if len(settings) > 1:
        notes.append("The alternatives' held-out answers were sampled with different lengths or temperatures.")
    out.append("".join(f"<p class='muted'>{html.escape(n)}</p>" for n in notes))
    points = [{"label": LABELS.get(m["name"], m["name"]), **m["eval"]} for m in methods if m["eval"]]
    out.append(_img(gains_against_kl(points, figures / "methods.png"), "gold and reward-model gain against KL"))
    return "".join(out)
