"""The report's own figures: proxy vs gold reward against KL, along PPO and across rounds."""

from __future__ import annotations

from pathlib import Path

from ranktune.plots import _figure, save_figure


def proxy_vs_gold(updates_by_round: dict[int, list[dict]], path: Path) -> Path | None:
    """Left: reward-model score and gold score along PPO (x = KL to the SFT policy).
    Right: the same against the update number. One line style per round."""
    if not any(updates_by_round.values()):
        return None
    plt = _figure()
    fig, (ax_kl, ax_step) = plt.subplots(1, 2, figsize=(11, 3.8))
    for r, rows in sorted(updates_by_round.items()):
        rows = [x for x in rows if "objective/scores" in x]
        if not rows:
            continue
        kl = [x["objective/kl"] for x in rows]
        steps = list(range(1, len(rows) + 1))
        proxy = [x["objective/scores"] for x in rows]
        gold = [x.get("objective/gold") for x in rows]
        ax_kl.plot(kl, proxy, "o-", ms=3, label=f"round {r}: reward model (proxy)")
        ax_step.plot(steps, proxy, "-", label=f"round {r}: proxy")
        if all(g is not None for g in gold):
            ax_kl.plot(kl, gold, "s--", ms=3, label=f"round {r}: gold (simulated reviewers' rule)")
            ax_step.plot(steps, gold, "--", label=f"round {r}: gold")
    ax_kl.set_xlabel("KL(policy || SFT), nats per answer")
    ax_kl.set_ylabel("mean reward of the update's answers")
    ax_step.set_xlabel("PPO update")
    for ax in (ax_kl, ax_step):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_kl.set_title("proxy and gold reward against KL")
    ax_step.set_title("along training")
    return save_figure(fig, path)


def rounds_summary(rounds: list[dict], path: Path) -> Path | None:
    """Held-out SFT vs PPO, per round: proxy (reward model) and gold score."""
    rounds = [r for r in rounds if r.get("eval")]
    if not rounds:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r["round"] for r in rounds]
    ax.plot(xs, [r["eval"]["ppo_score"] for r in rounds], "o-", label="PPO, reward model")
    ax.plot(xs, [r["eval"]["sft_score"] for r in rounds], "o:", label="SFT, reward model")
    ax.plot(xs, [r["eval"]["ppo_gold"] for r in rounds], "s-", label="PPO, gold")
    ax.plot(xs, [r["eval"]["sft_gold"] for r in rounds], "s:", label="SFT, gold")
    ax.set_xlabel("round")
    ax.set_xticks(xs)
    ax.set_ylabel("mean score, held-out prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("held-out evaluation by round")
    return save_figure(fig, path)


def gains_against_kl(points: list[dict], path: Path) -> Path | None:
    """One point per tuning method on the held-out evaluation: gain over the SFT policy in the
    reward-model score (left) and in the gold score (right) against KL to the SFT policy, with the
    standard error of the gain over prompts where the evaluation recorded one."""
    points = [p for p in points if p.get("kl_to_sft") is not None]
    if not points:
        return None
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    panels = (("score", "score_gain_se", "reward-model score gain (proxy)"),
              ("gold", "gold_gain_se", "gold score gain (simulated reviewers' rule)"))
    for ax, (key, se_key, title) in zip(axes, panels):
        for i, p in enumerate(points):
            if p.get(f"ppo_{key}") is None or p.get(f"sft_{key}") is None:
                continue
            gain, se = p[f"ppo_{key}"] - p[f"sft_{key}"], p.get(se_key)
            ax.errorbar([p["kl_to_sft"]], [gain], yerr=[se] if isinstance(se, float) and se == se else None,
                        fmt="os^Dv"[i % 5], ms=7, capsize=3)
            ax.annotate(p["label"], (p["kl_to_sft"], gain), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.axhline(0.0, color="#888", lw=0.8)
        ax.set_xlabel("KL(tuned || SFT), nats per answer")
        ax.set_ylabel("tuned minus SFT, held-out mean")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.15)  # room for the labels
    return save_figure(fig, path)
