"""`python -m report --run NAME`: runs/<run>/report.html, one self-contained page (figures inlined).

Reads only the run folder's artifacts — sft/, export/, rounds/round-<r>/{reward,rlhf}/ (or a single
reward/ and rlhf/ when the stages were run by hand), dpo/, rloo/, grpo/ (`python -m alternatives`), and the Arena
votes in labels.db (report/arena.py) — and writes the figures it draws itself to
runs/<run>/report/. Every text that came from a model or a prompt is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ranktune.config import parse_config
from ranktune.errors import InputError, exit_on_input_error
from ranktune.stats import gold_gain_verdict
from ranktune.runs import run_dir
from report.active_learning import active_learning_section
from report.arena import arena_section
from report.figures import proxy_vs_gold, rounds_summary
from report.html import _img, _json, _jsonl, _num, _table, _td
from report.methods import methods_section
from report.overoptimisation import overoptimisation_section

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} td,th{border:1px solid #ddd;padding:.35em .6em;
vertical-align:top;text-align:left} th{background:#f5f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums} .answer{white-space:pre-wrap;max-width:420px}
img{max-width:100%;border:1px solid #eee;margin:.4em 0} .muted{color:#6e6e73;font-size:.9em}
.good{color:#0a7d32;font-weight:600} .bad{color:#b3261e;font-weight:600}
"""


def find_rounds(run: Path) -> list[dict]:
    """Each round's reward and PPO folders (a run without rounds/ is one round: reward/ and rlhf/)."""
    rounds = []
    folders = sorted((run / "rounds").glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
    if not folders and ((run / "reward").is_dir() or (run / "rlhf").is_dir()):
        folders = [run]
    for i, folder in enumerate(folders, start=1):
        rounds.append({"round": i, "folder": folder, "reward": _json(folder / "reward" / "metrics.json"),
                       "rlhf": _json(folder / "rlhf" / "metrics.json"),
                       "updates": _jsonl(folder / "rlhf" / "metrics.jsonl"),
                       "samples": _jsonl(folder / "rlhf" / "eval_samples.jsonl")})
        rounds[-1]["eval"] = (rounds[-1]["rlhf"] or {}).get("eval")
    return rounds


def agreement_section(run: Path) -> str:
    rankings = _jsonl(run / "export" / "rankings.jsonl")
    summary = _json(run / "export" / "summary.json") or {}
    if not rankings:
        return "<p class='muted'>No labeling export in this run.</p>"
    from labeling_ui.stats import agreement

    for r in rankings:  # an item is a prompt's answers in one round
        r["item_id"] = (json.dumps(r["prompt"], sort_keys=True), r.get("round"))
    agree = agreement(rankings)
    reviewers = sorted({r["reviewer"] for r in rankings})
    simulated = all(name.startswith("sim-") for name in reviewers)
    rows = [[_td("rankings"), _td(len(rankings), "num")], [_td("pairs for the reward model"),
                                                             _td(summary.get("pairs"), "num")],
            [_td("reviewers"), _td(html.escape(", ".join(reviewers)) + (" (simulated)" if simulated else ""))],
            [_td("items ranked by 2+ reviewers"), _td(agree["items_compared"], "num")],
            [_td("pairwise agreement"), _td(_num(agree["pairwise_agreement"]), "num")],
            [_td("Kendall's tau-b"), _td(_num(agree["kendall_tau"]), "num")],
            [_td("Krippendorff's alpha (ordinal)"), _td(_num(agree["krippendorff_alpha"]), "num")]]
    held = {why: n for why, n in (summary.get("rankings_held_out") or {}).items() if n}
    if held:
        rows.append([_td("held out of training"),
                     _td(html.escape(", ".join(f"{n} {why.replace('_', ' ')}" for why, n in held.items())))])
    note = ("<p class='muted'>Simulated reviewers rank by a documented rule (ranktune/gold.py) plus noise and "
            "a personal taste for length, so they disagree the way people do, if less.</p>" if simulated else "")
    return _table(["", ""], rows) + note + reliability_table(summary.get("reliability") or [])


def reliability_table(reviewers: list[dict]) -> str:
    """Each reviewer's reliability as the export estimated it (labeling_ui/reliability.py)."""
    if not reviewers:
        return ""
    rows = [[_td(html.escape(r["reviewer"])), _td(r["rankings"], "num"), _td(_num(r["reliability"]), "num"),
             _td(_num(r["weight"]), "num"), _td(_num(r["gold_accuracy"]), "num"), _td(_num(r["agreement"]), "num"),
             _td(html.escape("; ".join(r.get("warnings") or [])))] for r in reviewers]
    return ("<h3>Reviewer reliability</h3><p class='muted'>Reliability: how often a reviewer's comparisons follow "
            "the panel's consensus (Crowd-BT; 1 = always, 0.5 = a coin, below = reversed); weight = max(0, 2 x "
            "reliability - 1), what <code>--label_weighting reliability</code> trains with; agreement: Cohen's kappa "
            "with the other reviewers' consensus.</p>"
            + _table(["reviewer", "rankings", "reliability", "weight", "gold accuracy", "agreement", "warnings"], rows))


def reward_section(rounds: list[dict]) -> str:
    out = []
    for r in rounds:
        m = r["reward"]
        if not m:
            continue
        test = m.get("test") or {}
        rows = [[_td("training pairs / rankings"), _td(f"{m.get('train_pairs')} / {m.get('train_rankings')}", "num")],
                [_td("held-out pairs (prompts never trained on)"), _td(test.get("pairs"), "num")],
                [_td("held-out accuracy"), _td(_num(test.get("accuracy")), "num")],
                [_td("longer-answer baseline"), _td(_num(test.get("length_baseline_accuracy")), "num")],
                [_td("calibration error"), _td(_num(test.get("expected_calibration_error")), "num")],
                [_td("training time"), _td(f"{m.get('train_seconds', 0):.0f} s", "num")]]
        folder = r["folder"] / "reward"
        out.append(f"<h3>round {r['round']}</h3>" + _table(["", ""], rows)
                   + _img(folder / "calibration.png", "reward model calibration")
                   + _img(folder / "training.png", "reward model training curves"))
    return "".join(out) or "<p class='muted'>No reward model in this run.</p>"


def ppo_section(rounds: list[dict], figures: Path) -> str:
    out = []
    fig = proxy_vs_gold({r["round"]: r["updates"] for r in rounds}, figures / "proxy_vs_gold.png")
    out.append(_img(fig, "proxy and gold reward against KL"))
    fig = rounds_summary(rounds, figures / "rounds.png") if len(rounds) > 1 else None
    out.append(_img(fig, "held-out evaluation by round"))
    for r in rounds:
        ev, m = r["eval"], r["rlhf"]
        if not m:
            continue
        out.append(f"<h3>round {r['round']}</h3>")
        if ev:
            def cls(a, b):
                return "good" if b > a else "bad"
            rows = [[_td("reward model score (proxy)"), _td(_num(ev["sft_score"]), "num"),
                     _td(f"<span class='{cls(ev['sft_score'], ev['ppo_score'])}'>{_num(ev['ppo_score'])}</span>", "num")],
                    [_td("gold score (simulated reviewers' rule)"), _td(_num(ev["sft_gold"]), "num"),
                     _td(f"<span class='{cls(ev['sft_gold'], ev['ppo_gold'])}'>{_num(ev['ppo_gold'])}</span>", "num")],
                    [_td("answers that ended (EOS)"), _td(_num(ev["sft_ended"], 2), "num"),
                     _td(_num(ev["ppo_ended"], 2), "num")],
                    [_td("words per answer"), _td(_num(ev["sft_words"], 1), "num"), _td(_num(ev["ppo_words"], 1), "num")],
                    [_td("KL to SFT (nats per answer)"), _td("0", "num"), _td(_num(ev["kl_to_sft"]), "num")],
                    [_td("win rate vs SFT (reward model)"), _td("", "num"), _td(_num(ev["win_rate_vs_sft"], 2), "num")]]
            out.append(f"<p>{ev['prompts']} held-out prompts, never seen in labeling or PPO.</p>"
                       + _table(["", "SFT", "PPO"], rows))
        out.append(f"<p class='muted'>{m['updates']} updates, {m['episodes']} episodes, {m['train_seconds']:.0f} s, "
                   f"peak RSS {m.get('peak_rss_mib')} MiB, LoRA: {m.get('use_peft')}, value model: "
                   f"{html.escape(str(m.get('value_model')))}</p>")
        out.append(_img(r["folder"] / "rlhf" / "ppo.png", "PPO training curves"))
    return "".join(out) or "<p class='muted'>No PPO policy in this run.</p>"


def samples_section(rounds: list[dict], n: int = 8) -> str:
    last = next((r for r in reversed(rounds) if r["samples"]), None)
    if last is None:
        return "<p class='muted'>No evaluation samples.</p>"
    rows = []
    for s in last["samples"][:n]:
        rows.append([_td(html.escape(s["prompt"]), "answer"),
                     _td(f"{html.escape(s['sft_answer'])}<br><span class='muted'>RM {s['sft_score']:+.2f} · gold "
                         f"{s['sft_gold']:+.2f}{'' if s['sft_ended'] else ' · cut off'}</span>", "answer"),
                     _td(f"{html.escape(s['ppo_answer'])}<br><span class='muted'>RM {s['ppo_score']:+.2f} · gold "
                         f"{s['ppo_gold']:+.2f}{'' if s['ppo_ended'] else ' · cut off'}</span>", "answer")])
    return (f"<p>Round {last['round']}'s final policy and the SFT policy answer the same held-out prompts.</p>"
            + _table(["prompt", "SFT", "PPO"], rows))


def verdict(rounds: list[dict]) -> str:
    """The page's first line: did the last round's PPO policy beat its SFT start on gold, beyond noise?"""
    last = next((r for r in reversed(rounds) if r["eval"]), None)
    if last is None:
        return "<p class='muted'>No held-out evaluation of a PPO policy in this run.</p>"
    sentence, status = gold_gain_verdict(last["eval"])
    cls = {"established": "good", "worse": "bad"}.get(status, "muted")
    return (f"<p id='verdict' data-status='{status}'><span class='{cls}'>PPO against SFT (round {last['round']}): "
            f"{html.escape(sentence)}.</span></p>")


def headline(run: Path, rounds: list[dict]) -> str:
    sft = _json(run / "sft" / "metrics.json") or {}
    loop = _json(run / "loop.json") or {}
    items = []
    if loop.get("seconds"):
        items.append(f"whole loop: {loop['seconds'] / 60:.1f} min, {loop.get('rounds')} round(s)")
    if "eval_loss" in sft:
        items.append(f"SFT held-out loss {sft['base_eval_loss']:.3f} → {sft['eval_loss']:.3f}")
    last = next((r for r in reversed(rounds) if r["eval"]), None)
    if last:
        ev = last["eval"]
        items.append(f"reward-model score {ev['sft_score']:+.3f} → {ev['ppo_score']:+.3f} at KL {ev['kl_to_sft']:.2f}")
        items.append(f"gold score {ev['sft_gold']:+.3f} → {ev['ppo_gold']:+.3f}")
    for r in rounds:
        test = (r["reward"] or {}).get("test") or {}
        if test.get("accuracy") is not None:
            items.append(f"round {r['round']} reward model: held-out accuracy {test['accuracy']:.3f} "
                         f"(longer-answer baseline {test.get('length_baseline_accuracy', float('nan')):.3f})")
    return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in items) + "</ul>"


def build(run: Path) -> Path:
    if not run.is_dir():
        raise InputError("no such run folder", run)
    figures = run / "report"
    figures.mkdir(exist_ok=True)
    rounds = find_rounds(run)
    sft = _json(run / "sft" / "metrics.json")
    parts = [f"<h1>ranktune run “{html.escape(run.name)}”</h1>",
             f"<p class='muted'>report written {time.strftime('%Y-%m-%d %H:%M')}</p>",
             verdict(rounds), "<h2>In short</h2>", headline(run, rounds),
             "<h2>1. Supervised fine-tuning</h2>",
             (_img(run / "sft" / "loss.png", "SFT loss") if sft else "<p class='muted'>No SFT model in this run.</p>"),
             "<h2>2. Labels</h2>", agreement_section(run),
             "<h2>3. Reward model</h2>", reward_section(rounds),
             "<h2>4. PPO</h2>", ppo_section(rounds, figures),
             "<h2>5. PPO and the alternatives</h2>", methods_section(run, figures),
             "<h2>6. Before and after</h2>", samples_section(rounds)]
    extra = [("Choosing what to label", active_learning_section(run, figures)),  # "": no such experiment
             ("Over-optimisation", overoptimisation_section(run, figures)),
             ("Arena", arena_section(run, figures))]  # "": the run's label store has no Arena votes
    for n, (title, section) in enumerate([(t, x) for t, x in extra if x], start=7):
        parts += [f"<h2>{n}. {title}</h2>", section]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>ranktune: {html.escape(run.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = run / "report.html"
    fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".html", dir=run)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path


@dataclass
class ReportArguments:
    run: str = field(default="default", metadata={"help": "Run name: reads and writes <runs_dir>/<run>/."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder holding all runs."})


@exit_on_input_error
def main(argv: list[str] | None = None) -> Path:
    (a,) = parse_config((ReportArguments,), argv)
    path = build(run_dir(a.run, a.runs_dir))
    print(f"report written to {path}")
    return path
