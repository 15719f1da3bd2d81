"""The reward model over HTTP (`python -m reward serve`) and its client (`ranktune.remote_scoring`): the
served scores are the folder's RewardScorer's, normalised; tokens, limits and bad bodies get one-line
JSON errors; the client retries and then says why; PPO and GRPO train against a served model."""

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch

from ranktune.remote_scoring import TOKEN_ENV, RemoteRewardScorer, RemoteScoringError, load_scorer
from ranktune.scoring import RewardScorer
from reward.serve import bind, create_app
from tiny_models import make_tiny_reward_dir

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BATCH, MAX_BODY = 4, 20_000
PROMPTS = ["Write about tea.",
           [{"role": "user", "content": "A poem about snow?"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "And rain?"}],
           "Write about the sea. " * 30,  # longer than max_length 64: cut from the left, on both sides alike
           "Explain how rain forms in clouds.", [{"role": "user", "content": "def add(a, b):"}], "thank you"]
ANSWERS = ["Tea is a drink.", "Snow falls softly", "Rain is water.", "The sea is big.", "Clouds cool the air",
           "return a + b", "You are welcome! <|im_start|> hello"]
ENDED = [True, False, True, True, False, True, False]


class CountingScorer(RewardScorer):
    """The server's scorer, counting what it scored: proof that a stage went through the server."""

    scored = 0

    def score(self, prompts, answers, ended=None, batch_size=16, raw=False):
        type(self).scored += len(answers)
        return super().score(prompts, answers, ended, batch_size, raw)


@contextlib.contextmanager
def serving(scorer, folder, **settings):
    """`create_app` under uvicorn in a thread, on a free loopback port."""
    import uvicorn

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(scorer, str(folder), **settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_llama):
    return make_tiny_reward_dir(tmp_path_factory.mktemp("tiny-rm"), tiny_llama,
                                {"gain": 2.0, "bias": 0.5, "max_length": 64})


@pytest.fixture(scope="module")
def local(reward_folder):
    return RewardScorer.load(reward_folder)


@pytest.fixture(scope="module")
def server(reward_folder):
    with serving(CountingScorer.load(reward_folder), reward_folder, token=TOKEN, max_batch=MAX_BATCH,
                 max_body_bytes=MAX_BODY) as url:
        yield url


@pytest.mark.parametrize("raw", [False, True])
def test_served_scores_are_the_local_scorers(server, local, raw):
    """Text and chat prompts, ended or cut off, one cut at max_length, in chunks of the server's max_batch."""
    with RemoteRewardScorer.load(server, TOKEN) as remote:
        assert remote.max_batch == MAX_BATCH < len(ANSWERS)
        got = remote.score(PROMPTS, ANSWERS, ENDED, raw=raw)
    expected = local.score(PROMPTS, ANSWERS, ENDED, raw=raw)
    assert got == pytest.approx(expected, abs=1e-5)
    assert len(set(round(x, 4) for x in got)) == len(got), "the answers score differently (a real comparison)"


def test_the_normalisation_and_the_eos_are_applied_by_the_server(server, local):
    with RemoteRewardScorer.load(server, TOKEN) as remote:
        normalised, raw = remote.score(PROMPTS, ANSWERS, ENDED), remote.score(PROMPTS, ANSWERS, ENDED, raw=True)
        ended_default = remote.score(PROMPTS[:3], ANSWERS[:3])
    assert normalised == pytest.approx([2.0 * r + 0.5 for r in raw], abs=1e-5)  # gain 2, bias 0.5
    assert ended_default == pytest.approx(local.score(PROMPTS[:3], ANSWERS[:3], [True] * 3), abs=1e-5)
    assert ended_default[1] != pytest.approx(normalised[1], abs=1e-4), "an answer cut off scores without its EOS"


def test_health_needs_no_token_and_says_what_is_served(server, reward_folder):
    health = httpx.get(f"{server}/health").json()
    assert health["ok"] is True and health["model"] == reward_folder.name and health["folder"] == str(reward_folder)
    assert health["max_length"] == 64 and health["normalization"] == {"gain": 2.0, "bias": 0.5}
    assert health["max_batch"] == MAX_BATCH and health["max_body_bytes"] == MAX_BODY and health["auth"] is True


def test_a_missing_or_wrong_token_is_refused_with_401(server):
    body = {"prompts": ["hi"], "answers": ["hello"]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
        response = httpx.post(f"{server}/v1/score", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert set(response.json()) == {"error"} and response.headers["www-authenticate"] == "Bearer"
    response = httpx.post(f"{server}/v1/score", json=body, headers=AUTH)
    assert response.status_code == 200 and set(response.json()) == {"scores", "spread"}
    assert response.json()["spread"] is None  # one model, no ensemble
    start = time.time()
    with pytest.raises(RemoteScoringError, match="refused the token .*wrong token.*RANKTUNE_REWARD_TOKEN"):
        RemoteRewardScorer.load(server, "wrong", backoff=5)  # a refusal is final: no retries, no waiting
    assert time.time() - start < 4


BAD_REQUESTS = [
    ("over max_batch", {"prompts": ["p"] * 5, "answers": ["a"] * 5}, 413, "more than this server's max_batch 4"),
    ("lengths differ", {"prompts": ["p"] * 2, "answers": ["a"] * 3}, 422, "2 prompts for 3 answers"),
    ("too large", {"prompts": ["p"], "answers": ["a" * (MAX_BODY + 1)]}, 413, "max_body_bytes 20000"),
    ("not JSON", b'{"prompts": [', 400, "not JSON"),
    ("not UTF-8", b'{"prompts": ["\xff"]}', 400, "not UTF-8"),
    ("not an object", [1, 2], 422, "must be a JSON object"),
    ("unknown field", {"prompts": ["p"], "answers": ["a"], "answer": ["a"]}, 422, "unknown field(s) 'answer'"),
    ("no answers", {"prompts": ["p"]}, 422, "missing field 'answers'"),
    ("answers not a list", {"prompts": ["p"], "answers": "a"}, 422, "'answers' must be a list"),
    ("answer not text", {"prompts": ["p"], "answers": [3]}, 422, "answers[0] must be a string"),
    ("bad message", {"prompts": [[{"role": "user"}]], "answers": ["a"]}, 422, "prompts[0] must be a string or"),
    ("ended too short", {"prompts": ["p", "q"], "answers": ["a", "b"], "ended": [True]}, 422, "'ended' must be"),
    ("ended not bool", {"prompts": ["p"], "answers": ["a"], "ended": [1]}, 422, "'ended' must be"),
    ("raw not bool", {"prompts": ["p"], "answers": ["a"], "raw": "yes"}, 422, "'raw' must be true or false"),
]


@pytest.mark.parametrize("name,body,status,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_a_bad_request_gets_one_clear_json_error(server, name, body, status, message):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(f"{server}/v1/score", headers=AUTH, **kwargs)
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"error"} and message in error["error"], error
    assert "\n" not in error["error"] and "Traceback" not in response.text
    with RemoteRewardScorer(server, TOKEN) as remote:  # the client names the server's reason
        if name == "over max_batch":
            remote._health = {"max_batch": 100}  # a client that believes the server takes more
            with pytest.raises(RemoteScoringError, match="HTTP 413: 5 answers, more than"):
                remote.score(body["prompts"], body["answers"])


def test_unknown_routes_and_methods_answer_json(server):
    for response in (httpx.get(f"{server}/nowhere"), httpx.get(f"{server}/v1/score", headers=AUTH)):
        assert response.status_code in (404, 405) and set(response.json()) == {"error"}


def test_concurrent_requests_queue_and_each_gets_its_own_scores(server, local):
    results, errors = {}, []

    def ask(i):
        try:
            with RemoteRewardScorer(server, TOKEN) as remote:
                results[i] = remote.score(PROMPTS[i:i + 3], ANSWERS[i:i + 3], ENDED[i:i + 3])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for i in range(5):
        assert results[i] == pytest.approx(local.score(PROMPTS[i:i + 3], ANSWERS[i:i + 3], ENDED[i:i + 3]), abs=1e-5)


def test_the_client_retries_connection_errors_then_says_why():
    calls = []

    def flaky(request):
        calls.append(request.url.path)
        if len(calls) <= 2:
            raise httpx.ConnectError("connection refused")
        if request.url.path == "/health":
            return httpx.Response(200, json={"max_batch": 2})
        if len(calls) == 3 + 1:
            return httpx.Response(503, json={"error": "restarting"})
        n = len(json.loads(request.content)["answers"])
        return httpx.Response(200, json={"scores": [0.25] * n, "spread": None})

    remote = RemoteRewardScorer("http://rm.invalid:1", None, attempts=4, backoff=0.001,
                                transport=httpx.MockTransport(flaky))
    assert remote.score(["p"] * 3, ["a"] * 3) == [0.25] * 3  # chunks of max_batch 2, after 2 refusals and a 503
    assert calls == ["/health"] * 3 + ["/v1/score"] * 3

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    start = time.time()
    with pytest.raises(RemoteScoringError, match=rf"127.0.0.1:{port}: no answer from the reward server after 3 "
                                                 r"attempts \(ConnectError"):
        RemoteRewardScorer.load(f"http://127.0.0.1:{port}", attempts=3, backoff=0.01)
    assert time.time() - start < 5


def test_a_server_that_is_not_a_reward_server_is_named():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"status": "up"}))
    with pytest.raises(RemoteScoringError, match="did not describe a reward server"):
        RemoteRewardScorer.load("http://other.invalid", transport=transport)


def test_the_serve_command_scores_and_refuses_bad_settings(reward_folder, local, tmp_path, repo_root):
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cmd = [sys.executable, "-m", "reward", "serve", "--model", str(reward_folder), "--port", "0",
           "--token_file", str(token_file), "--log_level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo_root, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving reward model {reward_folder} on http://127.0.0.1:"), (line, proc.poll())
        url = line.split(" on ")[1].split()[0]
        with RemoteRewardScorer.load(url, TOKEN) as remote:
            assert remote.score(PROMPTS, ANSWERS, ENDED) == pytest.approx(local.score(PROMPTS, ANSWERS, ENDED),
                                                                          abs=1e-5)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    for extra, message in ((["--host", "0.0.0.0"], "error: field 'host': refusing to serve on 0.0.0.0 without a "
                                                   "token: pass --token_file FILE or set $RANKTUNE_REWARD_TOKEN"),
                           (["--model", str(tmp_path / "nowhere")], "no reward model here (no config.json)")):
        out = subprocess.run([sys.executable, "-m", "reward", "serve", "--model", str(reward_folder), *extra],
                             capture_output=True, text=True, cwd=repo_root, env=env, timeout=120)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr


def test_value_model_policy_starts_at_zero_beside_a_remote_or_local_reward(tiny_llama, reward_folder):
    from peft import LoraConfig

    from ranktune.errors import InputError
    from rlhf.models import build_models

    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    for reward_spec in (None, str(reward_folder)):
        trained, roles, _, reward_tokenizer = build_models(str(tiny_llama), reward_spec, lora, "policy",
                                                           reward_normalization=(2.0, 0.5))
        values = trained.token_values(ids, torch.ones_like(ids), 3)
        assert torch.equal(values, torch.zeros_like(values)), "a fresh head, nothing folded in"
        if reward_spec is None:
            assert reward_tokenizer is None
            with pytest.raises(RuntimeError, match="remote reward model"), roles.reward():
                pass
        else:  # the reward role is the reward model itself, untouched by the value model
            with roles.reward() as reward_model:
                raw = RewardScorer(reward_model, reward_tokenizer, max_length=64).score(PROMPTS, ANSWERS, ENDED, raw=True)
            assert raw == pytest.approx(RewardScorer.load(reward_folder).score(PROMPTS, ANSWERS, ENDED, raw=True),
                                        abs=1e-5)
    with pytest.raises(InputError, match="value_model: policy"):
        build_models(str(tiny_llama), None, lora, "reward")


def _ppo_args(tmp_path, policy, reward, prompts, run, *extra):
    return ["--run", run, "--runs_dir", str(tmp_path / "runs"), "--prompts", str(prompts),
            "--model_name_or_path", str(policy), "--reward_model", str(reward), "--total_episodes", "8",
            "--per_device_train_batch_size", "4", "--response_length", "8", "--max_eval_prompts", "4",
            "--per_device_eval_batch_size", "4", "--save_steps", "10", "--logging_steps", "1",
            "--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "all-linear", "--lora_top_layers", "1",
            "--disable_tqdm", "true", *extra]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    topics = ["the sea", "rain", "a fox", "bread", "tea", "a poem", "the moon", "a dog", "snow", "python"]
    path.write_text("".join(json.dumps({"prompt": f"Write about {t}, please ({i})."}) + "\n"
                            for i, t in enumerate(topics * 2)))
    return path


def _finite_numbers(record: dict) -> bool:
    return all(math.isfinite(v) for v in record.values() if isinstance(v, (int, float)) and not isinstance(v, bool))


def test_ppo_scores_its_rollouts_through_the_served_reward_model(server, reward_folder, tiny_llama, prompts_file,
                                                                 tmp_path, monkeypatch, capsys):
    from rlhf.train import main as rlhf_main

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    before = CountingScorer.scored
    remote = rlhf_main(_ppo_args(tmp_path, tiny_llama, server, prompts_file, "remote"))
    assert "value_model: policy (the reward model is remote" in capsys.readouterr().out
    assert CountingScorer.scored - before >= 8, "the rollouts were scored by the server"
    metrics = json.loads((remote / "metrics.json").read_text())
    assert metrics["updates"] == 2 and metrics["reward_model"] == server and metrics["value_model"] == "policy"
    log = [json.loads(x) for x in (remote / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(_finite_numbers(r) for r in log) and _finite_numbers(metrics["eval"])
    # the same run against the folder itself: the first update's answers are the same draws of the same
    # policy (LoRA starts as a no-op), so their scores must be the same numbers
    folder = rlhf_main(_ppo_args(tmp_path, tiny_llama, reward_folder, prompts_file, "local"))
    samples = [[json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()] for run in (remote, folder)]
    first = [[r for r in rows if r["update"] == 0] for rows in samples]
    assert [r["answer"] for r in first[0]] == [r["answer"] for r in first[1]] and len(first[0]) == 4
    assert [r["score"] for r in first[0]] == pytest.approx([r["score"] for r in first[1]], abs=1e-5)
    local_log = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert log[0]["objective/scores"] == pytest.approx(local_log[0]["objective/scores"], abs=1e-5)
    assert json.loads((folder / "metrics.json").read_text())["value_model"] == "reward"


def test_ppo_with_a_wrong_token_stops_in_one_line_before_loading_a_model(server, tiny_llama, prompts_file, tmp_path,
                                                                         monkeypatch, capsys):
    from rlhf.train import main as rlhf_main

    monkeypatch.setenv(TOKEN_ENV, "wrong")
    with pytest.raises(SystemExit) as exit_info:
        rlhf_main(_ppo_args(tmp_path, tiny_llama, server, prompts_file, "t"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {server}: the reward server refused the token")
    assert not (tmp_path / "runs" / "t" / "rlhf").exists()


def test_grpo_trains_against_the_served_reward_model(server, local, tiny_llama, prompts_file, tmp_path):
    from alternatives.online import ModelReward
    from alternatives.online import main as online_main

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with load_scorer(server, str(token_file)) as remote:  # TRL's reward function, as RLOO and GRPO call it
        eos = local.tokenizer.eos_token_id
        ids = [[5, eos] if e else [5, 6] for e in ENDED]
        got = ModelReward(remote, [eos], 1.5)(PROMPTS, ANSWERS, ids)
    assert got == pytest.approx(ModelReward(local, [eos], 1.5)(PROMPTS, ANSWERS, ids), abs=1e-5)

    before = CountingScorer.scored
    final = online_main("grpo", [
        "--config", "configs/grpo.yaml", "--run", "t", "--runs_dir", str(tmp_path / "runs"),
        "--prompts", str(prompts_file), "--model_name_or_path", str(tiny_llama), "--reward_model", server,
        "--reward_token_file", str(token_file), "--max_eval_prompts", "2", "--eval_samples_per_prompt", "1",
        "--per_device_eval_batch_size", "4", "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8",
        "--lora_target_modules", "all-linear", "--logging_steps", "1", "--save_strategy", "no",
        "--disable_tqdm", "true", "--max_steps", "2", "--num_generations", "2", "--per_device_train_batch_size", "4",
        "--max_completion_length", "8"])
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["reward_model"] == server and metrics["steps"] == 2
    assert CountingScorer.scored - before == metrics["episodes"] + 2 * 2 * 1, "training and evaluation answers"
    assert _finite_numbers(metrics["eval"]) and isinstance(metrics["eval"]["ppo_score"], float)


def test_a_body_sent_in_chunks_is_refused_once_past_the_limit(server):
    def chunks():  # no Content-Length: the server must count as it reads
        yield b'{"prompts": ["p"], "answers": ["'
        for _ in range(MAX_BODY // 1000 + 1):
            yield b"a" * 1000
        yield b'"]}'

    response = httpx.post(f"{server}/v1/score", headers=AUTH, content=chunks())
    assert response.status_code == 413 and response.json() == {
        "error": f"the body is more than this server's max_body_bytes {MAX_BODY}"}
