"""Score through a reward model served by `python -m reward serve`, as if it were loaded here.

`RemoteRewardScorer(url, token).score(prompts, answers, ended, batch_size, raw, aggregation,
uncertainty_coef)` gives what `RewardScorer.load(folder).score(...)` would on the server's folder
(`score_with_spread` also an ensemble's per-answer spread): the server renders, cuts and
normalises with its own tokenizer and settings, so a stage sends text and never needs the reward
model's weights or tokenizer. `load_scorer(spec)` picks the local or the remote one from the spec.
The request format is in docs/reward.md ("Serving the reward model over HTTP").
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from ranktune.aggregation import check_aggregation
from ranktune.errors import InputError

TOKEN_ENV = "RANKTUNE_REWARD_TOKEN"
RETRY_STATUS = (502, 503, 504)  # a proxy in front of a server that is restarting, or one that is overloaded


class RemoteScoringError(InputError):
    """The reward server refused a request, or could not be reached: one line naming the server."""


def is_remote(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(("http://", "https://"))


def read_token(token_file: str | None = None) -> str | None:
    """The bearer token: the file's first line when a file is named, else $RANKTUNE_REWARD_TOKEN, else None."""
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read the token file ({getattr(err, 'strerror', None) or err})", path) from None
        if not token:
            raise InputError("the token file is empty", path)
        if "\n" in token or "\r" in token:
            raise InputError("the token file must hold one line (the token)", path)
        return token
    return os.environ.get(TOKEN_ENV) or None


class RemoteRewardScorer:
    """`score(prompts, answers, ended, batch_size, raw, aggregation, uncertainty_coef)` -> normalised
    rewards, computed by the server (an ensemble's members aggregated there); `score_with_spread` also
    returns the members' spread per answer.

    Requests go in chunks of the server's `max_batch` (from GET /health); `batch_size` is taken for
    RewardScorer's signature only, the server choosing its own forward-pass size. Connection errors,
    timeouts and 502/503/504 are retried with exponential backoff (scoring is idempotent, so a request
    that may have reached the server is safe to send again); after `attempts` tries, or at once on any
    other refusal (401, 4xx), a `RemoteScoringError` says why.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0, attempts: int = 5,
                 backoff: float = 0.5, transport=None):
        import httpx

        if not is_remote(url):
            raise InputError(f"not an http(s) URL: '{url}'")
        self.url, self.attempts, self.backoff = url.rstrip("/"), max(1, attempts), backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)
        self._health: dict | None = None

    @classmethod
    def load(cls, url: str, token: str | None = None, **kwargs) -> "RemoteRewardScorer":
        """A scorer that has reached the server and been let in: a wrong URL or token fails now,
        in a second, rather than after the first rollout."""
        scorer = cls(url, token, **kwargs)
        scorer.check()
        return scorer

    def health(self) -> dict:
        if self._health is None:
            health = self._request("GET", "/health")
            if not isinstance(health, dict) or not isinstance(health.get("max_batch"), int) or health["max_batch"] < 1:
                raise RemoteScoringError("GET /health did not describe a reward server (no max_batch): is this "
                                         "`python -m reward serve`?", self.url)
            self._health = health
        return self._health

    def check(self) -> dict:
        """GET /health, then an empty scoring request, which only a right token passes."""
        health = self.health()
        self._post_scores([], [], [], False)
        return health

    @property
    def max_batch(self) -> int:
        return self.health()["max_batch"]

    @property
    def members(self) -> int:
        """The served model's members (1: a single model; servers from before ensembles say nothing: 1)."""
        members = self.health().get("members", 1)
        return members if isinstance(members, int) and not isinstance(members, bool) and members > 0 else 1

    def score(self, prompts: list, answers: list[str], ended: list[bool] | None = None, batch_size: int = 16,
              raw: bool = False, aggregation: str = "mean", uncertainty_coef: float = 1.0) -> list[float]:
        return self.score_with_spread(prompts, answers, ended, batch_size, raw, aggregation, uncertainty_coef)[0]

    def score_with_spread(self, prompts: list, answers: list[str], ended: list[bool] | None = None,
                          batch_size: int = 16, raw: bool = False, aggregation: str = "mean",
                          uncertainty_coef: float = 1.0) -> tuple[list[float], list[float] | None]:
        """(scores, spreads): an ensemble's members' std per answer, normalised; None from a single model."""
        check_aggregation(aggregation, uncertainty_coef)
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts for {len(answers)} answers")
        ended = [True] * len(answers) if ended is None else [bool(e) for e in ended]
        # only sent when not the default, so a server from before ensembles (which refuses unknown fields) still scores
        options = {} if aggregation == "mean" else {"aggregation": aggregation, "uncertainty_coef": uncertainty_coef}
        chunk = self.max_batch
        scores: list[float] = []
        spreads: list[float] | None = [] if not answers and self.members > 1 else None
        for i in range(0, len(answers), chunk):
            got, spread = self._post_scores(list(prompts[i:i + chunk]), list(answers[i:i + chunk]),
                                            ended[i:i + chunk], raw, options)
            scores.extend(got)
            if spread is not None:
                spreads = (spreads or []) + spread
        return scores, spreads

    def _post_scores(self, prompts: list, answers: list[str], ended: list[bool], raw: bool,
                     options: dict | None = None) -> tuple[list[float], list[float] | None]:
        body = self._request("POST", "/v1/score", {"prompts": prompts, "answers": answers, "ended": ended, "raw": raw,
                                                   **(options or {})})
        scores = body.get("scores") if isinstance(body, dict) else None
        if not _finite_floats(scores, len(answers)):
            raise RemoteScoringError(f"POST /v1/score answered without {len(answers)} finite scores", self.url)
        spread = body.get("spread")
        if spread is not None and not _finite_floats(spread, len(answers)):
            raise RemoteScoringError(f"POST /v1/score answered a spread that is not {len(answers)} finite numbers",
                                     self.url)
        return [float(s) for s in scores], None if spread is None else [float(s) for s in spread]

    def _request(self, method: str, path: str, body: dict | None = None):
        import httpx

        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._client.request(method, self.url + path, json=body)
            except httpx.TransportError as err:  # refused, reset, timed out: the server may be (re)starting
                last = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                if response.status_code not in RETRY_STATUS:
                    return self._result(response, method, path)
                last = f"HTTP {response.status_code}"
            if attempt < self.attempts:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        raise RemoteScoringError(f"no answer from the reward server after {self.attempts} attempts ({last})", self.url)

    def _result(self, response, method: str, path: str):
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 401:
            raise RemoteScoringError(f"the reward server refused the token ({_message(body)}): set ${TOKEN_ENV} or "
                                     "pass --reward_token_file with the server's token", self.url)
        if response.status_code >= 400:
            raise RemoteScoringError(f"{method} {path}: HTTP {response.status_code}: {_message(body)}", self.url)
        if body is None:
            raise RemoteScoringError(f"{method} {path}: the answer is not JSON", self.url)
        return body

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "RemoteRewardScorer":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _finite_floats(values, n: int) -> bool:
    return (isinstance(values, list) and len(values) == n
            and all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in values))


def _message(body) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return " ".join(str(error).split())[:300] if error else "no message"


def load_scorer(spec: str, token_file: str | None = None, **kwargs):
    """`RemoteRewardScorer.load` for an http(s) URL (token from `token_file` or $RANKTUNE_REWARD_TOKEN),
    else `RewardScorer.load` of a local folder."""
    if is_remote(spec):
        return RemoteRewardScorer.load(spec, read_token(token_file))
    from ranktune.scoring import RewardScorer

    return RewardScorer.load(spec, **kwargs)
