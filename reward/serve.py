"""`python -m reward serve --model runs/<run>/reward`: the reward model over HTTP.

POST /v1/score takes prompts (text or chat messages) and answers and returns the folder's
`RewardScorer` scores, normalised as every stage sees them (an ensemble's: aggregated as the request
asks, with the members' spread beside them); GET /health says what is served. A
bearer token guards scoring; off loopback the server will not start without one. The format is in
docs/reward.md ("Serving the reward model over HTTP"); `ranktune.remote_scoring` is the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from ranktune.aggregation import AGGREGATIONS
from ranktune.errors import InputError, exit_on_input_error
from ranktune.remote_scoring import TOKEN_ENV, read_token

FIELDS = ("prompts", "answers", "ended", "raw", "aggregation", "uncertainty_coef")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


@dataclass
class ServeArguments:
    model: str | None = field(default=None, metadata={"help": "Reward model folder to serve (runs/<run>/reward)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on; off loopback a token is required."})
    port: int = field(default=8500, metadata={"help": "Port to listen on (0: any free port)."})
    token_file: str | None = field(
        default=None, metadata={"help": f"File holding the bearer token clients must send (default: ${TOKEN_ENV}; "
                                        "none: no token asked, loopback only)."})
    max_batch: int = field(default=64, metadata={"help": "Most answers in one request (more: HTTP 413)."})
    max_body_bytes: int = field(default=4 * 2**20, metadata={"help": "Largest request body, in bytes (more: HTTP 413)."})
    batch_size: int = field(default=16, metadata={"help": "Answers per forward pass of the model."})
    max_length: int | None = field(
        default=None, metadata={"help": "Cut texts to this many tokens (default: the length the normalisation was "
                                        "fitted at; another length changes the scores' scale)."})
    log_level: str = field(default="info", metadata={"help": "uvicorn's log level (info logs every request)."})


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _check_token(header: str | None, token: bytes | None) -> None:
    if token is None:
        return
    if not header:
        raise ApiError(401, "missing token: send the header 'Authorization: Bearer <token>'")
    scheme, _, value = header.partition(" ")
    # headers arrive decoded as latin-1: encoding back gives the bytes the client sent.
    # compare_digest takes as long for a near miss as for a wild guess.
    if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip().encode("latin-1", "replace"), token):
        raise ApiError(401, "wrong token")


async def _read_body(request, limit: int) -> bytes:
    """The body, stopped as soon as it passes `limit` bytes: a huge upload is refused, never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is {int(declared)} bytes, more than this server's max_body_bytes {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is more than this server's max_body_bytes {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_message_list(prompt) -> bool:
    return isinstance(prompt, list) and bool(prompt) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt)


@dataclass
class ScoreRequest:
    prompts: list
    answers: list[str]
    ended: list[bool]
    raw: bool = False
    aggregation: str = "mean"
    uncertainty_coef: float = 1.0


def _aggregation(body: dict) -> tuple[str, float]:
    """The request's `aggregation` and `uncertainty_coef` (defaults mean, 1.0); a bad value is a 400."""
    how, coef = body.get("aggregation", "mean"), body.get("uncertainty_coef", 1.0)
    if not isinstance(how, str) or how not in AGGREGATIONS:
        raise ApiError(400, f"'aggregation' must be one of {', '.join(AGGREGATIONS)}, "
                            f"got {_one_line(json.dumps(how), 60)}")
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not math.isfinite(coef) or coef < 0:
        raise ApiError(400, f"'uncertainty_coef' must be a number, 0 or more, got {_one_line(json.dumps(coef), 60)}")
    return how, float(coef)


def parse_request(raw_body: bytes, max_batch: int) -> ScoreRequest:
    """The scoring request in a body, or an ApiError saying what is wrong with it."""
    try:
        body = json.loads(raw_body)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None
    except ValueError as err:
        raise ApiError(400, f"the body is not JSON ({_one_line(err)})") from None
    if not isinstance(body, dict):
        raise ApiError(422, 'the body must be a JSON object: {"prompts": [...], "answers": [...]}')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(map(repr, unknown))} (expected {', '.join(FIELDS)})")
    for key in ("prompts", "answers"):
        if key not in body:
            raise ApiError(422, f"missing field '{key}'")
        if not isinstance(body[key], list):
            raise ApiError(422, f"'{key}' must be a list, got {type(body[key]).__name__}")
    prompts, answers = body["prompts"], body["answers"]
    ended, raw = body.get("ended"), body.get("raw", False)
    if len(answers) > max_batch:
        raise ApiError(413, f"{len(answers)} answers, more than this server's max_batch {max_batch}: "
                            "send them in chunks")
    if len(prompts) != len(answers):
        raise ApiError(422, f"{len(prompts)} prompts for {len(answers)} answers: one prompt per answer")
    for i, p in enumerate(prompts):
        if not (isinstance(p, str) or _is_message_list(p)):
            raise ApiError(422, f"prompts[{i}] must be a string or a non-empty list of chat messages "
                                '({"role": "...", "content": "..."})')
    bad = next((i for i, a in enumerate(answers) if not isinstance(a, str)), None)
    if bad is not None:
        raise ApiError(422, f"answers[{bad}] must be a string, got {type(answers[bad]).__name__}")
    if ended is None:
        ended = [True] * len(answers)
    elif not isinstance(ended, list) or len(ended) != len(answers) or not all(isinstance(e, bool) for e in ended):
        raise ApiError(422, "'ended' must be a list of true/false, one per answer (or left out: all true)")
    if not isinstance(raw, bool):
        raise ApiError(422, "'raw' must be true or false")
    return ScoreRequest(prompts, answers, ended, raw, *_aggregation(body))


def create_app(scorer, folder: str, token: str | None = None, max_batch: int = 64, max_body_bytes: int = 4 * 2**20,
               batch_size: int = 16):
    """The FastAPI app serving `scorer` (a RewardScorer). Scoring runs on one worker thread: torch
    already uses every core for one batch, so requests wait in that thread's queue, in arrival
    order, while the event loop keeps answering /health and refusing bad requests."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    secret = token.encode("utf-8") if token else None
    members = getattr(scorer, "members", 1)
    ensemble = members > 1  # an ensemble's answers carry the members' spread
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward-scorer")

    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        worker.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="ranktune reward model", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    health = {"ok": True, "model": Path(folder).name, "folder": str(folder), "max_length": scorer.max_length,
              "normalization": {"gain": scorer.gain, "bias": scorer.bias}, "max_batch": max_batch,
              "max_body_bytes": max_body_bytes, "auth": secret is not None, "spread": ensemble,
              "members": members}

    def error(status: int, message: str, **headers) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    @app.exception_handler(ApiError)
    async def api_error(_, err: ApiError):
        return error(err.status, err.message, **({"WWW-Authenticate": "Bearer"} if err.status == 401 else {}))

    @app.exception_handler(HTTPException)
    async def http_error(_, err: HTTPException):  # unknown route, wrong method: JSON like every other error
        return error(err.status_code, _one_line(err.detail))

    @app.get("/health")
    async def get_health():
        return health

    def run_scoring(req: ScoreRequest):
        try:  # the chat template may refuse a conversation: the client's fault
            scorer.texts(req.prompts, req.answers, req.ended)
        except Exception as err:  # noqa: BLE001 - whatever the template raises, one line back to the client
            raise ApiError(422, f"cannot render the prompts with this model's chat template ({_one_line(err)})")
        spreads = None
        try:
            if ensemble:
                scores, spreads = scorer.score_with_spread(req.prompts, req.answers, req.ended, batch_size, req.raw,
                                                           req.aggregation, req.uncertainty_coef)
            else:  # a single model: every aggregation is its score
                scores = scorer.score(req.prompts, req.answers, req.ended, batch_size=batch_size, raw=req.raw)
        except Exception as err:  # noqa: BLE001 - the client gets one line, never a traceback
            raise ApiError(500, f"scoring failed ({type(err).__name__}: {_one_line(err)})")
        if not all(math.isfinite(s) for s in scores + (spreads or [])):
            raise ApiError(500, "the model gave a non-finite score")
        return scores, spreads

    @app.post("/v1/score")
    async def post_score(request: Request):
        _check_token(request.headers.get("authorization"), secret)  # before reading a stranger's body
        req = parse_request(await _read_body(request, max_body_bytes), max_batch)
        scores, spreads = [], ([] if ensemble else None)
        if req.answers:
            scores, spreads = await asyncio.get_running_loop().run_in_executor(worker, run_scoring, req)
        # `spread`: an ensemble's per-answer disagreement (members' std, normalised); a single model has none
        return {"scores": scores, "spread": spreads}

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, made before the model loads so a taken port fails in a second."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise InputError(f"cannot listen on {host}:{port} ({err.strerror or err})", field="host") from None
    sock.listen(128)
    return sock


def check_settings(args: ServeArguments) -> Path:
    if not args.model:
        raise InputError("say which reward model to serve: --model runs/<run>/reward", field="model")
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise InputError("no reward model here (no config.json): run `make reward` first", folder)
    for name in ("max_batch", "max_body_bytes", "batch_size"):
        if getattr(args, name) < 1:
            raise InputError("must be at least 1", field=name)
    if not 0 <= args.port <= 65535:
        raise InputError("must be between 0 and 65535", field="port")
    if args.max_length is not None and args.max_length < 1:
        raise InputError("must be at least 1", field="max_length")
    if args.log_level not in LOG_LEVELS:
        raise InputError(f"must be one of {', '.join(LOG_LEVELS)}", field="log_level")
    return folder


@exit_on_input_error
def main(args: list[str] | None = None) -> None:
    import uvicorn

    from ranktune.config import parse_config
    from ranktune.scoring import RewardScorer

    (a,) = parse_config((ServeArguments,), args)
    folder = check_settings(a)
    token = read_token(a.token_file)
    if token is None and not is_loopback(a.host):
        raise InputError(f"refusing to serve on {a.host} without a token: pass --token_file FILE or set ${TOKEN_ENV} "
                         "(or serve on 127.0.0.1)", field="host")
    sock = bind(a.host, a.port)
    scorer = RewardScorer.load(folder, max_length=a.max_length)
    app = create_app(scorer, a.model, token, a.max_batch, a.max_body_bytes, a.batch_size)
    port = sock.getsockname()[1]
    print(f"serving reward model {folder} on http://{a.host}:{port} (POST /v1/score, GET /health; "
          f"{'bearer token required' if token else 'no token: loopback only'}; max_length {scorer.max_length})",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=a.host, port=port, log_level=a.log_level))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
