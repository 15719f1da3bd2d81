"""benchmarks/label_quality.py end to end on a tiny pool and a tiny random model: the panels label
through the store and export, the reliability check reads reviewers.json, a reward model trains in a
child process on the consensus, and results.json and the tables hold what the full run reports."""

import json
import subprocess
import sys

from ranktune.gold import BAD_KINDS, gold_score

ANSWERS = ["Sure, here is a short and clear answer about {t}. I hope this helps.",
           "{t} {t} {t} {t} {t} {t} {t} {t}",
           "No.",
           "Here is what I know about {t}: it is a topic many people ask about, and the short version is that "
           "it depends."]


def _pool(path, n=14):
    topics = ["rain", "bread", "chess", "rivers", "music", "glass", "trees", "maps", "clocks", "bees", "salt",
              "kites", "boats", "stars"]
    with path.open("w") as f:
        for t in topics[:n]:
            prompt = f"Tell me about {t}."
            answers = [a.format(t=t) for a in ANSWERS]
            ended = [True, False, True, True]
            gold = [round(gold_score(prompt, a, e), 4) for a, e in zip(answers, ended)]
            f.write(json.dumps({"prompt": prompt, "answers": answers, "ended": ended, "ranks": [1, 2, 3, 4],
                                "gold": gold}) + "\n")


def test_label_quality_benchmark_runs_end_to_end(tiny_llama, tmp_path, repo_root):
    _pool(tmp_path / "pool.jsonl")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "label_quality.py"), "--pool", str(tmp_path / "pool.jsonl"),
         "--seeds", "0", "--out", str(out), "--model", str(tiny_llama), "--use_peft", "false",
         "--learning_rate", "1e-3", "--normalization_samples", "8", "--max_length", "64",
         "--conditions", "c_bad1_consensus"],
        capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    seed = res["per_seed"][0]
    assert seed["test_items"] == 4 and seed["train_items"] == 10
    assert set(seed["reliability"]) == {*BAD_KINDS, "adversarial,random"}
    for check in seed["reliability"].values():
        assert isinstance(check["ok"], bool) and all(n.startswith("sim-bad-") for n in check["bad"])
    assert seed["labels"]["clean"]["rankings"] == 30  # overlap 3
    consensus = seed["conditions"]["c_bad1_consensus"]
    assert 0 <= consensus["gold_agreement"] <= 1 and consensus["train_rankings"] == 10  # one consensus an item
    assert "| 1 bad (adversarial) | (c) consensus |" in proc.stdout and "| adversarial + random |" in proc.stdout
