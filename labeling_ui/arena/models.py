"""The Arena's models: which ones a run has, and the engine that makes two of them answer.

Discovery (`discover_run_models`): the run's published policy folders, by stage name:
`sft`, `rlhf`, `dpo`, `rloo`, `grpo` under runs/<run>/, and each loop round's under
runs/<run>/rounds/round-<r>/ (named "round-<r>/rlhf", ...; see rlhf/loop.py). The reward model
is not a chat model and is never listed. An admin can add any local model folder or a bundled
model (`smollm2-135m`, ranktune/models.py) under a name of their own (`check_model_spec`).
The registry itself (names, paths, enabled) lives in the store: `ArenaStore.models()`.

The engine (`ArenaEngine`). The request thread only queues work: `submit` returns a `Job` at
once, and ONE worker thread generates, one `generate` at a time (two CPU cores; a GPU is used
when there is one), side A's answer and then side B's. Jobs wait in a bounded queue (`QueueFull`
past `max_queue` waiting jobs, with a message for the reviewer). At most `max_resident` models
stay loaded: a model is loaded on first use (ranktune/models.py's loader) and the least recently
used one is evicted to make room. Answers stream: a `Job`'s `snapshot()` (poll) or `stream()`
(iterate; blocks until something changed) give each side's text so far, and in the end the final
texts, whether each model stopped by itself (`ended`), time to first token and tokens/s.

Prompts are built as every stage builds them (ranktune.prompting.render_prompt: the model's chat
template, or the plain instruction format), sampled with the stated settings only
(ranktune.sampling.sampling_config + top_p), answers cut at the first EOS and decoded without
special tokens, as labeling_ui/generate.py does for the candidates reviewers rank.

Times: `ttft_s` counts from the start of that side's `generate` call (model loading is apart, in
`load_s`), so a model that had to be loaded is not judged slower; `tokens_per_s` is the decoding
rate after the first token ((tokens - 1) / seconds from first to last token; None with 1 token).
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from labeling_ui.tasks import SubmitError
from ranktune.errors import InputError

RUN_STAGES = ("sft", "rlhf", "dpo", "rloo", "grpo")
ROUND_DIR = re.compile(r"^round-(\d+)$")


class ArenaError(SubmitError):
    """Something the arena refuses; the message is meant for the reviewer (like SubmitError)."""


class QueueFull(ArenaError):
    """The engine's queue is full: the reviewer should try again shortly."""


# ---- which models --------------------------------------------------------------------------

@dataclass(frozen=True)
class FoundModel:
    name: str
    path: str
    source: str = "run"


def is_model_folder(folder: Path) -> bool:
    """A published causal LM folder (a policy stage's output), not a reward model or a work folder."""
    import json

    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return not archs or any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs)


def discover_run_models(run: str | Path) -> list[FoundModel]:
    """The run's policy checkpoints: sft, rlhf, dpo, rloo, grpo, then each loop round's, in round order."""
    run = Path(run)
    found = [FoundModel(stage, str(run / stage)) for stage in RUN_STAGES if is_model_folder(run / stage)]
    rounds = []
    if (run / "rounds").is_dir():
        rounds = sorted((int(m.group(1)), d) for d in (run / "rounds").iterdir() if (m := ROUND_DIR.match(d.name)))
    for _, folder in rounds:
        found += [FoundModel(f"{folder.name}/{stage}", str(folder / stage)) for stage in RUN_STAGES
                  if is_model_folder(folder / stage)]
    return found


def check_model_spec(path: str) -> str:
    """What an admin may register: a bundled model's name, or a local causal-LM folder. Returns it
    (a folder as an absolute path); InputError otherwise. Nothing is loaded here."""
    from ranktune.models import BUNDLED_MODELS

    spec = (path or "").strip()
    if spec in BUNDLED_MODELS:
        return spec
    folder = Path(spec).expanduser()
    if not spec or not folder.is_dir():
        raise InputError(f"not a model folder or a bundled model ({', '.join(BUNDLED_MODELS)})", spec or None,
                         field="path")
    if not is_model_folder(folder):
        raise InputError("not a causal LM folder (no config.json, or a reward model)", folder, field="path")
    return str(folder.resolve())


# ---- the engine ----------------------------------------------------------------------------

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


@dataclass(frozen=True)
class SideState:
    """One side's answer as far as it has got."""

    model: str
    text: str = ""
    num_tokens: int = 0
    done: bool = False
    ended: bool = False  # the model emitted EOS (False: cut off at max_new_tokens, or not done yet)
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    load_s: float | None = None  # time spent loading the model for this answer (0: it was resident)

    def stats(self) -> dict:
        """What `ArenaStore.add_turn` stores for this side."""
        return {"num_tokens": self.num_tokens, "ttft_s": self.ttft_s, "tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True)
class JobState:
    """A snapshot of a job; `version` grows with every change."""

    id: int
    status: str  # queued, running, done, failed, cancelled
    a: SideState
    b: SideState
    position: int | None = None  # while queued: how many jobs are ahead (0 = next)
    error: str | None = None  # failed: a message for the reviewer
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED, CANCELLED)


class Job:
    """Two answers on their way. Thread-safe; every read is a consistent `JobState`."""

    def __init__(self, engine: "ArenaEngine", job_id: int, messages_a: list, messages_b: list, model_a: str,
                 model_b: str):
        self._engine, self.id = engine, job_id
        self.messages = {"a": messages_a, "b": messages_b}
        self.models = {"a": model_a, "b": model_b}
        self._state = JobState(job_id, QUEUED, SideState(model_a), SideState(model_b))
        self._cancel = False

    def _update(self, **changes) -> None:  # under the engine's lock
        self._state = dataclasses.replace(self._state, version=self._state.version + 1, **changes)
        self._engine._cv.notify_all()

    def _side(self, side: str, **changes) -> None:
        self._update(**{side: dataclasses.replace(getattr(self._state, side), **changes)})

    def snapshot(self) -> JobState:
        with self._engine._cv:
            state = self._state
            if state.status == QUEUED:
                state = dataclasses.replace(state, position=self._engine._position(self))
            return state

    def stream(self, timeout: float | None = None, min_interval_s: float = 0.0) -> Iterator[JobState]:
        """The state now, then after each change (at most one per `min_interval_s`), ending with the
        finished state. TimeoutError if it is not finished within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = -1
        while True:
            with self._engine._cv:
                while self._state.version == seen:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"arena job {self.id} not finished after {timeout} s")
                    self._engine._cv.wait(left)
                seen = self._state.version
            state = self.snapshot()
            yield state
            if state.finished:
                return
            if min_interval_s:
                time.sleep(min_interval_s)

    def wait(self, timeout: float | None = None) -> JobState:
        """The finished state (TimeoutError after `timeout` seconds)."""
        state = self.snapshot()
        for state in self.stream(timeout):
            pass
        return state

    def result(self, timeout: float | None = None) -> JobState:
        """`wait`, and ArenaError (the reviewer-facing message) unless both answers are done."""
        state = self.wait(timeout)
        if state.status != DONE:
            raise ArenaError(state.error or "The answers were cancelled.")
        return state

    def cancel(self) -> None:
        """Stop this job: dropped from the queue, or generation stopped at the next token."""
        with self._engine._cv:
            self._cancel = True
            if self._state.status == QUEUED:
                self._engine._drop(self)
                self._update(status=CANCELLED, error="The answers were cancelled.")


class ArenaEngine:
    """Generates the arena's answers in one worker thread; see the module docstring.

    `model_path(name)` turns a model's arena name into what the loader takes (a folder or a bundled
    model; `ArenaStore.model_path`); without it the name is used as it is. `loader(path)` returns
    (model, tokenizer); the default is ranktune.models.load_causal_lm, in eval mode, on `device`
    (default: cuda when available, else cpu). `seed`: each answer is sampled with
    torch.manual_seed(seed + a counter), so a run of the same jobs gives the same answers."""

    def __init__(self, model_path: Callable[[str], str] | None = None, max_resident: int = 2, max_queue: int = 8,
                 max_new_tokens: int = 256, temperature: float = 0.7, top_p: float = 0.95,
                 max_prompt_tokens: int = 1024, loader: Callable[[str], tuple] | None = None,
                 device: str | None = None, seed: int | None = None):
        checks = [(max_resident >= 1, "max_resident_models", "must be at least 1"),
                  (max_queue >= 1, "max_queue", "must be at least 1"),
                  (max_new_tokens >= 1, "max_new_tokens", "must be at least 1"),
                  (temperature > 0, "temperature", "must be more than 0"),
                  (0 < top_p <= 1, "top_p", "must be in (0, 1]"),
                  (max_prompt_tokens >= 1, "max_prompt_tokens", "must be at least 1")]
        for ok, name, message in checks:
            if not ok:
                raise InputError(message, field=name)
        self.model_path = model_path or (lambda name: name)
        self.max_resident, self.max_queue = max_resident, max_queue
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_prompt_tokens, self.seed, self.device = max_prompt_tokens, seed, device
        self.loader = loader or self._load
        self._cv = threading.Condition()
        self._pending: collections.deque[Job] = collections.deque()
        self._resident: collections.OrderedDict[str, tuple] = collections.OrderedDict()  # oldest use first
        self._next_id = 1
        self._samples = 0
        self._running: Job | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.loads = 0
        self.evicted: list[str] = []  # every eviction, oldest first

    # -- the request side

    def submit(self, messages_a: list[dict], messages_b: list[dict], model_a: str, model_b: str) -> Job:
        """Queue both answers of one turn: side A's model answers `messages_a` (its own conversation so
        far, ending with the new user message), side B's `messages_b`. QueueFull when `max_queue` jobs
        already wait; ArenaError when the engine is closed."""
        for messages in (messages_a, messages_b):
            if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
                raise ArenaError("Nothing to answer: the conversation has no messages.")
        with self._cv:
            if self._closed:
                raise ArenaError("The arena is shutting down; try again later.")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"The arena is busy: {len(self._pending)} chats are already waiting for the models. "
                                "Try again in a minute.")
            job = Job(self, self._next_id, list(messages_a), list(messages_b), model_a, model_b)
            self._next_id += 1
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="arena-engine", daemon=True)
                self._thread.start()
            self._cv.notify_all()
            return job

    def resident(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._cv:
            return list(self._resident)

    def stats(self) -> dict:
        """For an admin read-out: queue length, the job running, loaded models, loads and evictions."""
        with self._cv:
            return {"queued": len(self._pending), "running": self._running.id if self._running else None,
                    "resident": list(self._resident), "loads": self.loads, "evictions": len(self.evicted),
                    "max_resident": self.max_resident, "max_queue": self.max_queue}

    def close(self, timeout: float | None = 30) -> None:
        """Cancel waiting jobs, let the running one stop at its next token, end the worker, free the models."""
        with self._cv:
            self._closed = True
            for job in list(self._pending):
                job._cancel = True
                job._update(status=CANCELLED, error="The arena was shut down.")
            self._pending.clear()
            if self._running is not None:
                self._running._cancel = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cv:
            self._resident.clear()
        gc.collect()

    def __enter__(self) -> "ArenaEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _position(self, job: Job) -> int | None:  # under the lock
        try:
            return self._pending.index(job)
        except ValueError:
            return None

    def _drop(self, job: Job) -> None:  # under the lock
        try:
            self._pending.remove(job)
        except ValueError:
            pass

    # -- the worker side

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = self._pending.popleft()
                self._running = job
                job._update(status=RUNNING)
            try:
                for side in ("a", "b"):
                    if job._cancel:
                        break
                    self._answer(job, side)
                with self._cv:
                    if job._cancel:
                        job._update(status=CANCELLED, error="The answers were cancelled.")
                    else:
                        job._update(status=DONE)
            except Exception as err:  # a model that fails to load or generate fails its job, not the engine
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                with self._cv:
                    job._update(status=FAILED, error=f"The model could not answer ({first}).")
            finally:
                with self._cv:
                    self._running = None

    def _model(self, name: str) -> tuple:
        """(model, tokenizer) of `name`, loaded if needed (evicting the least recently used); worker only."""
        with self._cv:
            if name in self._resident:
                self._resident.move_to_end(name)
                return self._resident[name]
            while len(self._resident) >= self.max_resident:
                old, _ = self._resident.popitem(last=False)
                self.evicted.append(old)
        gc.collect()  # the evicted weights go before the next model's arrive
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        loaded = self.loader(self.model_path(name))
        with self._cv:
            self._resident[name] = loaded
            self.loads += 1
        return loaded

    def _load(self, path: str) -> tuple:
        import torch

        from ranktune.models import load_causal_lm

        model, tokenizer = load_causal_lm(path)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return model.to(device).eval(), tokenizer

    def _answer(self, job: Job, side: str) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from ranktune.prompting import render_prompt
        from ranktune.sampling import sampling_config, stated_config_only

        started = time.monotonic()
        model, tokenizer = self._model(job.models[side])
        begin = time.monotonic()
        with self._cv:
            job._side(side, load_s=round(begin - started, 4))
        text = render_prompt(tokenizer, job.messages[side])
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False, truncation=True,
                        max_length=self.max_prompt_tokens, truncation_side="left")
        device = next(model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        config = sampling_config(tokenizer, self.max_new_tokens, self.temperature)
        config.top_p = self.top_p
        streamer = _SideStreamer(self, job, side, tokenizer, begin)

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), job._cancel, dtype=torch.bool, device=input_ids.device)

        if self.seed is not None:
            torch.manual_seed(self.seed + self._samples)
        self._samples += 1
        with torch.no_grad(), stated_config_only(model, config):
            out = model.generate(**enc, generation_config=config, streamer=streamer,
                                 stopping_criteria=StoppingCriteriaList([_Cancelled()]))
        row = out[0, enc["input_ids"].shape[1]:].tolist()
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        stop = row.index(eos) if eos in row else None
        body = row[:stop] if stop is not None else [t for t in row if t != pad]
        final = tokenizer.decode(body, skip_special_tokens=True).strip()
        with self._cv:
            job._side(side, text=final, num_tokens=len(body), done=True, ended=stop is not None,
                      ttft_s=streamer.ttft(), tokens_per_s=streamer.rate())


class _SideStreamer:
    """transformers' streamer protocol (put/end), in the worker thread: each new token updates the
    job's text for that side (decoded from all tokens so far, so multi-byte characters come out whole)."""

    def __init__(self, engine: ArenaEngine, job: Job, side: str, tokenizer, begin: float):
        self.engine, self.job, self.side, self.tokenizer, self.begin = engine, job, side, tokenizer, begin
        self.ids: list[int] = []
        self.prompt_seen = False
        self.stopped = False
        self.first: float | None = None
        self.last: float | None = None

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() hands the prompt over first
            self.prompt_seen = True
            return
        if self.stopped:
            return
        now = time.monotonic()
        for token in value.reshape(-1).tolist():
            if token == self.tokenizer.eos_token_id:
                self.stopped = True
                break
            self.ids.append(token)
        if self.first is None:
            self.first = now
        self.last = now
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        with self.engine._cv:
            self.job._side(self.side, text=text, num_tokens=len(self.ids), ttft_s=round(self.first - self.begin, 4))

    def end(self) -> None:
        pass

    def ttft(self) -> float | None:
        return None if self.first is None else round(self.first - self.begin, 4)

    def rate(self) -> float | None:
        n = len(self.ids) + (1 if self.stopped else 0)  # EOS is a generated token too
        if self.first is None or self.last is None or n < 2 or self.last <= self.first:
            return None
        return round((n - 1) / (self.last - self.first), 2)
