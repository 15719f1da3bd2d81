"""The Arena's backend (issue 21): the engine (two tiny random models answer, stream, LRU
eviction, a bounded queue), the store (owner-only conversations, one vote per turn, rate limit,
max turns, reveal), the export of votes as pairs the reward stage trains on, and simulated
voters that vote by the gold rule."""

from __future__ import annotations

import json
import random
import re
import threading
import time

import pytest

from labeling_ui.arena.export import ARENA_PAIRS_FILE, turn_prompts
from labeling_ui.arena.leaderboard import Vote, leaderboard
from labeling_ui.arena.models import ArenaEngine, ArenaError, QueueFull, discover_run_models
from labeling_ui.arena.simulate import ArenaVoter, outcome_of
from labeling_ui.arena.store import NOT_YOURS, ArenaStore
from labeling_ui.cli import main as label_main
from labeling_ui.db import sqlite_url
from labeling_ui.export import export
from labeling_ui.store import LabelStore
from labeling_ui.testing import FakeClock
from ranktune.errors import InputError
from ranktune.gold import SimulatedReviewer, gold_score
from reward.records import read_rankings
from tiny_models import make_tiny_model_dir

PASSWORD = "correct horse"
HI = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """Three tiny random llama-style models that differ only in their seed."""
    return {name: str(make_tiny_model_dir(tmp_path_factory.mktemp(f"tiny-{name}"), "llama", seed=seed))
            for name, seed in (("one", 1), ("two", 2), ("three", 3))}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def label_store(tmp_path, clock) -> LabelStore:
    store = LabelStore(sqlite_url(tmp_path / "labels.db"), clock=clock, shuffle=False)
    for name in ("ann", "ben"):
        store.accounts.add(name, PASSWORD)
    return store


@pytest.fixture
def arena(label_store, models) -> ArenaStore:
    arena = ArenaStore(label_store, rate_limit_per_minute=0, max_turns=4, rng=random.Random(0))
    for name in ("one", "two"):
        arena.add_model(name, models[name], "test")
    return arena


# ---- the engine --------------------------------------------------------------------------------

def test_the_engine_streams_both_answers_then_the_final_texts_and_speeds(models):
    with ArenaEngine(models.get, max_resident=2, max_queue=2, max_new_tokens=12, temperature=1.0, seed=0) as engine:
        job = engine.submit(HI, HI + [{"role": "assistant", "content": "Waves."}, {"role": "user", "content": "More"}],
                            "one", "two")
        states = list(job.stream(timeout=120))
    final = states[-1]
    assert final.status == "done" and final.finished and final.error is None
    for side in ("a", "b"):
        partial = [getattr(s, side) for s in states[:-1] if not getattr(s, side).done and getattr(s, side).num_tokens]
        assert len({p.num_tokens for p in partial}) >= 2, f"side {side}: fewer than 2 partial updates"
        got = getattr(final, side)
        assert got.done and got.num_tokens >= 1 and isinstance(got.ended, bool)
        assert got.ttft_s is not None and got.ttft_s >= 0 and got.load_s is not None
        assert got.tokens_per_s is None or got.tokens_per_s > 0
        counts = [p.num_tokens for p in partial]
        assert counts == sorted(counts) and counts[-1] <= got.num_tokens  # a snapshot may skip tokens, never go back
    assert final.a.model == "one" and final.b.model == "two"
    # one generate at a time: A's answer is done before B's first token
    assert next(i for i, s in enumerate(states) if s.a.done) < next(i for i, s in enumerate(states) if s.b.num_tokens)


def test_a_third_model_evicts_the_least_recently_used(models):
    with ArenaEngine(models.get, max_resident=2, max_new_tokens=3) as engine:
        engine.submit(HI, HI, "one", "two").result(120)
        assert engine.resident() == ["one", "two"] and engine.loads == 2
        engine.submit(HI, HI, "three", "two").result(120)  # "one" is the least recently used
        assert engine.evicted == ["one"] and engine.resident() == ["three", "two"] and engine.loads == 3
        engine.submit(HI, HI, "two", "three").result(120)  # both resident: nothing loaded
        assert engine.loads == 3 and engine.resident() == ["two", "three"]


def test_the_queue_is_bounded_and_a_failing_model_fails_only_its_job(models):
    gate = threading.Event()

    def stuck_loader(path):
        gate.wait(30)
        raise OSError("no weights here")

    engine = ArenaEngine(max_resident=1, max_queue=2, loader=stuck_loader)
    try:
        running = engine.submit(HI, HI, "x", "y")
        deadline = time.monotonic() + 10
        while running.snapshot().status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first, second = engine.submit(HI, HI, "x", "y"), engine.submit(HI, HI, "x", "y")
        assert (first.snapshot().position, second.snapshot().position) == (0, 1)
        with pytest.raises(QueueFull, match="busy: 2 chats are already waiting"):
            engine.submit(HI, HI, "x", "y")
        second.cancel()
        assert second.snapshot().status == "cancelled"
        engine.submit(HI, HI, "x", "y")  # the cancelled job's place is free again
        gate.set()
        with pytest.raises(ArenaError, match=r"could not answer \(no weights here\)"):
            running.result(30)
        assert first.wait(30).status == "failed"
    finally:
        gate.set()
        engine.close()
    with pytest.raises(ArenaError, match="shutting down"):
        engine.submit(HI, HI, "x", "y")


# ---- the registry ------------------------------------------------------------------------------

def _config(folder, arch="LlamaForCausalLM"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [arch]}))


def test_the_run_checkpoints_are_discovered_and_synced(tmp_path, label_store, models):
    run = tmp_path / "runs" / "r"
    for stage in ("sft", "rlhf", "dpo", "rounds/round-1/rlhf", "rounds/round-10/rlhf", "rounds/round-2/rlhf"):
        _config(run / stage)
    _config(run / "reward", "LlamaForSequenceClassification")  # not a chat model
    _config(run / "sft.work")
    (run / "grpo").mkdir()  # no config.json: not published
    names = [m.name for m in discover_run_models(run)]
    assert names == ["sft", "rlhf", "dpo", "round-1/rlhf", "round-2/rlhf", "round-10/rlhf"]
    arena = ArenaStore(label_store)
    arena.add_model("dpo", models["one"], "admin-ann")  # an admin's model wins a name clash
    stats = arena.refresh_models(run)
    assert stats["shadowed"] == ["dpo"] and len(stats["added"]) == 5
    assert arena.model_path("dpo") == models["one"]
    (run / "rlhf" / "config.json").unlink()
    assert arena.refresh_models(run)["disabled"] == ["rlhf"]
    assert "rlhf" not in [m.name for m in arena.models()] and "rlhf" in [m.name for m in arena.models(False)]
    with pytest.raises(InputError, match="not a model folder"):
        arena.add_model("nope", str(tmp_path / "missing"), "admin-ann")
    assert arena.add_model("smol", "smollm2-135m", "admin-ann").path == "smollm2-135m"  # not loaded here
    assert [e["action"] for e in label_store.audit_log()][:2] == ["arena-add-model", "arena-add-model"]


# ---- the store ---------------------------------------------------------------------------------

def test_a_reviewer_cannot_read_or_touch_another_reviewers_conversation(arena):
    conv = arena.start("ann")
    assert {conv.model_a, conv.model_b} == {"one", "two"} and conv.reviewer == "ann"
    turn = arena.add_turn(conv.id, "ann", "Hello?", "Hi there.", "Good day.")
    for attempt in (lambda: arena.conversation(conv.id, "ben"), lambda: arena.check_turn(conv.id, "ben"),
                    lambda: arena.prepare_turn(conv.id, "ben", "x"),
                    lambda: arena.add_turn(conv.id, "ben", "x", "y", "z"), lambda: arena.vote(turn.id, "ben", "a"),
                    lambda: arena.reveal(conv.id, "ben"), lambda: arena.conversation(conv.id + 99, "ann"),
                    lambda: arena.vote(turn.id + 99, "ann", "a")):
        with pytest.raises(ArenaError, match=NOT_YOURS):
            attempt()
    assert arena.conversations("ben") == [] and [c.id for c in arena.conversations("ann")] == [conv.id]
    assert arena.conversation(str(conv.id), "ann").turns[0].answer_a == "Hi there."


def test_one_vote_per_turn_sent_twice_is_stored_once(arena):
    conv = arena.start("ann")
    turn = arena.add_turn(conv.id, "ann", "Hello?", "Hi there.", "Good day.")
    assert not arena.vote(turn.id, "ann", "a", "friendlier").duplicate
    assert arena.vote(turn.id, "ann", "a", "friendlier").duplicate  # a double click
    with pytest.raises(ArenaError, match="already voted"):
        arena.vote(turn.id, "ann", "b")
    with pytest.raises(ArenaError, match="A vote is one of a, b, tie, both_bad"):
        arena.vote(turn.id, "ann", "maybe")
    with pytest.raises(ArenaError, match="limited to 1000"):
        arena.vote(arena.add_turn(conv.id, "ann", "More?", "x", "y").id, "ann", "tie", "r" * 1001)
    assert arena.counts() == {"conversations": 1, "turns": 2, "votes": 1, "a": 1, "b": 0, "tie": 0, "both_bad": 0}
    assert arena.conversation(conv.id, "ann").turns[0].vote == "a"


def test_the_rate_limit_and_the_conversation_length(label_store, clock, models):
    arena = ArenaStore(label_store, rate_limit_per_minute=3, max_turns=2, rng=random.Random(1))
    for name in ("one", "two"):
        arena.add_model(name, models[name], "test")
    first = arena.start("ann")
    arena.add_turn(first.id, "ann", "1", "a", "b")
    clock.advance(seconds=10)
    arena.add_turn(first.id, "ann", "2", "a", "b")
    with pytest.raises(ArenaError, match="reached 2 turns"):
        arena.check_turn(first.id, "ann")
    second = arena.start("ann")
    clock.advance(seconds=10)
    arena.add_turn(second.id, "ann", "3", "a", "b")
    with pytest.raises(ArenaError, match=r"3 messages a minute in the arena; wait 40 s"):
        arena.prepare_turn(second.id, "ann", "4")
    with pytest.raises(ArenaError, match="a minute"):
        arena.add_turn(second.id, "ann", "4", "a", "b")
    ben = arena.start("ben")
    arena.add_turn(ben.id, "ben", "1", "a", "b")  # the limit is per reviewer
    clock.advance(seconds=41)
    conv, messages_a, messages_b = arena.prepare_turn(second.id, "ann", "4")
    assert messages_a == [{"role": "user", "content": "3"}, {"role": "assistant", "content": "a"},
                          {"role": "user", "content": "4"}]
    assert messages_b[1] == {"role": "assistant", "content": "b"} and conv.turns[0].message == "3"
    with pytest.raises(ArenaError, match="Write a message"):
        arena.prepare_turn(second.id, "ann", "   ")


def test_revealing_the_names_ends_the_conversation(arena):
    conv = arena.start("ann")
    turn = arena.add_turn(conv.id, "ann", "Hello?", "Hi.", "Hey.")
    shown = arena.reveal(conv.id, "ann")
    assert shown.revealed and arena.reveal(conv.id, "ann").revealed_at == shown.revealed_at
    with pytest.raises(ArenaError, match="revealed"):
        arena.add_turn(conv.id, "ann", "More?", "x", "y")
    with pytest.raises(ArenaError, match="revealed"):
        arena.vote(turn.id, "ann", "a")


def test_pairs_are_drawn_from_enabled_models_with_random_sides(arena, models):
    arena.add_model("three", models["three"], "test")
    arena.set_model_enabled("two", False, "test")
    sides = [(c.model_a, c.model_b) for c in (arena.start("ann") for _ in range(30))]
    assert all(set(s) == {"one", "three"} for s in sides)
    assert {a for a, _ in sides} == {"one", "three"}
    with pytest.raises(ArenaError, match="not in the arena"):
        arena.start("ann", ["one", "two"])
    with pytest.raises(ArenaError, match="at least two models"):
        arena.start("ann", ["one"])


def test_votes_are_the_leaderboards_votes_by_side(arena):
    for outcome in ("a", "b", "tie", "both_bad"):
        conv = arena.start("ann")
        arena.vote(arena.add_turn(conv.id, "ann", "Hi", "x", "y").id, "ann", outcome)
    votes = arena.votes()
    assert all(isinstance(v, Vote) for v in votes) and [v.outcome for v in votes] == ["a", "b", "tie", "both_bad"]
    convs = arena.conversations("ann")[::-1]
    assert [(v.model_a, v.model_b) for v in votes] == [(c.model_a, c.model_b) for c in convs]
    board = leaderboard(votes, bootstrap=0)
    assert {s.model for s in board.standings} == {"one", "two"}


# ---- the export --------------------------------------------------------------------------------

def _voted_arena(arena) -> list[dict]:
    """8 one-turn conversations voted a or b (pairs), plus a tie, a both_bad, a vote on a later turn of
    a diverged conversation, and identical answers: none of those four make a pair."""
    expected = []
    for i in range(8):
        conv = arena.start("ann")
        good, bad = f"Rain forms when vapour number {i} cools into drops.", f"bad answer {i} {i} {i}"
        a_good = i % 2 == 0
        turn = arena.add_turn(conv.id, "ann", f"Question {i}: how does rain form?", good if a_good else bad,
                              bad if a_good else good)
        arena.vote(turn.id, "ann", "a" if a_good else "b")
        expected.append({"chosen": good, "rejected": bad, "model_chosen": conv.model_a if a_good else conv.model_b})
    for outcome in ("tie", "both_bad"):
        conv = arena.start("ben")
        arena.vote(arena.add_turn(conv.id, "ben", "Tell me a joke.", "A joke.", "Another joke.").id, "ben", outcome)
    conv = arena.start("ben")
    arena.add_turn(conv.id, "ben", "Name a color.", "Red.", "Blue.")
    arena.vote(arena.add_turn(conv.id, "ben", "Why that one?", "I like red.", "I like blue.").id, "ben", "a")
    same = arena.start("ben")
    arena.vote(arena.add_turn(same.id, "ben", "Say yes.", "Yes.", "Yes. ").id, "ben", "b")
    return expected


def test_arena_votes_export_as_pairs_the_reward_stage_trains_on(tmp_path, label_store, arena, tiny_llama):
    from reward.train import main as reward_main

    label_store.add_item("Name a color.", ["Red.", "Blue."], [True, True], "pol", 1)
    task = label_store.next_task("ann")
    label_store.submit("ann", task.assignment_id, [1, 2], token="ann-tok-1")
    expected = _voted_arena(arena)
    out = tmp_path / "export"
    summary = export(label_store, out)
    pairs = [json.loads(line) for line in (out / ARENA_PAIRS_FILE).read_text().splitlines()]
    assert [{k: p[k] for k in ("chosen", "rejected", "model_chosen")} for p in pairs] == expected
    assert all(p["source"] == "arena" and p["reviewer"] == "ann" and p["weight"] == 1.0 and p["turn"] == 1
               and p["prompt"] == [{"role": "user", "content": f"Question {i}: how does rain form?"}]
               and {p["model_chosen"], p["model_rejected"]} == {"one", "two"} for i, p in enumerate(pairs))
    assert summary["arena"]["pairs"] == 8 and summary["arena"]["votes"] == 12
    assert summary["arena"]["no_pair"] == {"tie": 1, "both_bad": 1, "diverged_history": 1, "identical_answers": 1,
                                           "disabled_reviewer": 0}
    assert any("arena votes gave 8 pairs" in n for n in summary["notes"])
    rankings, stats = read_rankings(str(out / ARENA_PAIRS_FILE))
    assert stats.pairs == 8 and all(r.prompt[0]["role"] == "user" and r.ranks == [1, 2] for r in rankings)
    both = tmp_path / "all.jsonl"  # rankings and arena pairs in one file, as docs/arena.md says
    both.write_text((out / "rankings.jsonl").read_text() + (out / ARENA_PAIRS_FILE).read_text())
    assert read_rankings(str(both))[1].pairs == 9
    final = reward_main(["--config", "configs/reward.yaml", "--model_name_or_path", str(tiny_llama),
                         "--data", str(out / ARENA_PAIRS_FILE), "--runs_dir", str(tmp_path / "runs"), "--run", "arena",
                         "--num_train_epochs", "1", "--max_length", "48", "--per_device_train_batch_size", "4",
                         "--gradient_accumulation_steps", "1", "--eval_fraction", "0.25", "--save_steps", "1000",
                         "--disable_tqdm", "true", "--seed", "0"])
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["data"].endswith(ARENA_PAIRS_FILE) and metrics["data_stats"]["pairs"] == 8
    assert metrics["train_pairs"] == 6 and metrics["test_prompts"] == 2 and metrics["test"]["pairs"] == 2


def test_a_pair_needs_both_sides_to_have_answered_the_same_messages(arena):
    conv = arena.start("ann")
    arena.add_turn(conv.id, "ann", "Name a color.", "Red.", "Red.")
    arena.add_turn(conv.id, "ann", "Why?", "It is warm.", "I like it.")
    arena.add_turn(conv.id, "ann", "And another?", "Blue.", "Green.")
    whole = arena.conversation(conv.id, "ann")
    a2, b2 = turn_prompts(whole, 2)
    assert a2 == b2 == [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Red."},
                        {"role": "user", "content": "Why?"}]  # identical first answers: turn 2 is still shared
    a3, b3 = turn_prompts(whole, 3)
    assert a3 != b3 and a3[3]["content"] == "It is warm." and b3[3]["content"] == "I like it."
    assert whole.next_messages("Last?")[1][-3:] == [{"role": "user", "content": "And another?"},
                                                    {"role": "assistant", "content": "Green."},
                                                    {"role": "user", "content": "Last?"}]


# ---- simulated voters --------------------------------------------------------------------------

def test_simulated_voters_vote_by_the_gold_score():
    voter = ArenaVoter(SimulatedReviewer("sim-1", noise=0.0), both_bad_below=0.0)
    message = "Explain how rain forms in clouds."
    good = "Rain forms in clouds when water vapour cools, condenses into droplets, and they grow heavy and fall."
    loop = "rain rain rain rain rain rain rain rain rain rain rain rain"
    worse = "Clouds."
    assert gold_score(message, good) > 0 > gold_score(message, loop, ended=False)
    assert voter.judge(message, good, loop, True, False) == "a"
    assert voter.judge(message, loop, good, False, True) == "b"
    assert voter.judge(message, good, good) == "tie"
    assert voter.judge(message, loop, worse, False, False) == "both_bad"
    tasteful = ArenaVoter(SimulatedReviewer("sim-2", noise=0.0, length_taste=50.0))  # loves length
    assert tasteful.judge(message, worse + " " + good, good) == "a"


def test_arena_simulate_runs_simulated_chats_through_the_engine_and_store(tmp_path, models):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}: tell me about {i}."}) + "\n" for i in range(5)))
    common = ["--runs_dir", str(tmp_path / "runs"), "--run", "sim"]
    stats = label_main(["arena-simulate", *common, "--prompts", str(prompts), "--arena_models", f"one={models['one']}",
                        f"two={models['two']}", "--arena_turns", "5", "--arena_turns_per_conversation", "2",
                        "--simulated_reviewers", "2", "--max_new_tokens", "6"])
    assert stats["turns"] == 5 and sum(stats["outcomes"].values()) == 5 and stats["conversations"] == 3
    store = LabelStore(sqlite_url(tmp_path / "runs" / "sim" / "labels.db"))
    arena = ArenaStore(store)
    records = arena.vote_records()
    assert len(records) == 5 and {r["reviewer"] for r in records} == {"sim-1", "sim-2"}
    assert all(r["reason"].startswith("simulated") for r in records)
    assert all(c.revealed and len(c.turns) == 2 for c in arena.conversations("sim-1")[1:])
    for r in records:  # each vote is what its voter's utilities (gold + taste + noise) say
        ua, ub = map(float, re.findall(r"utility A (\S+), B (\S+)$", r["reason"])[0])
        assert r["outcome"] == outcome_of(ua, ub, 0.05, 0.0)
    store.close()
    with pytest.raises(SystemExit):  # a run without two models: a one-line error
        label_main(["arena-simulate", "--runs_dir", str(tmp_path / "runs"), "--run", "empty", "--prompts",
                    str(prompts), "--arena_turns", "1"])
