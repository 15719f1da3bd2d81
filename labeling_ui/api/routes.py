"""The routes of `/api/v1`: what a reviewer's page can do (next task, submit, skip, undo, progress)
and what an admin's tools need (add items, counts, export), as JSON over the same store calls.

Who is calling is settled before a route runs: the gate (labeling_ui/api/gate.py) checks the
bearer token, its rate limit and the body size, and puts the account in the request's scope.
Routes only check the role. Answers are by *shown* index, exactly as on the page: a task lists
its answers in this reviewer's order, labelled A, B, ...; which model wrote an answer is never
sent to a reviewer (the ranking is blind). Submitting twice with one token answers "Already
saved" the second time, as the page does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from swagger_ui_bundle import swagger_ui_path

from labeling_ui.accounts import ReviewerInfo
from labeling_ui.api.gate import API_PREFIX
from labeling_ui.store import LabelStore
from labeling_ui.tasks import (MAX_COMMENT_CHARS, MAX_DEMONSTRATION_CHARS, Progress, StoreUnavailable, SubmitError,
                               Task, Turn, UnknownReviewer)
from ranktune.errors import InputError

EXPORT_FILES = ("rankings.jsonl", "pairs.jsonl", "consensus.jsonl", "ratings.jsonl", "demonstrations.jsonl",
                "comments.jsonl", "flagged.jsonl", "arena_pairs.jsonl", "reviewers.json", "summary.json")
MAX_ITEMS_PER_CALL = 1000


# ---- bodies ------------------------------------------------------------------------------------

class AnswerOut(BaseModel):
    label: str = Field(description="A, B, ...: the answer's place in this reviewer's order")
    text: str
    ended: bool = Field(description="false: the model was cut off at its token limit")


class PreviousOut(BaseModel):
    ranks: list[int] | None = Field(description="what was sent last time, in this task's answer order")
    skipped: bool
    flags: list[str]
    comment: str
    demonstration: str
    response: dict | None = None


class TaskOut(BaseModel):
    assignment_id: int
    item_id: int
    round: int
    question: str = Field(description="ranking | pairwise | rating (labeling_ui/questions/)")
    prompt: str | list[dict[str, Any]] = Field(description="text, or chat messages [{role, content}]")
    prompt_text: str
    answers: list[AnswerOut]
    expires_at: str = Field(description="UTC; after it the item may be offered to another reviewer")
    previous: PreviousOut | None = Field(None, description="set when undo reopened the task")


class ProgressOut(BaseModel):
    done: int
    skipped: int
    remaining: int
    more: bool = Field(description="true: at least `remaining` items are left, maybe more (a task's answer counts "
                                   "only the first 100); GET /progress always counts them all")
    today: int
    total: int


class TurnOut(BaseModel):
    task: TaskOut | None = Field(description="null: nothing left for this reviewer")
    progress: ProgressOut


class SubmitIn(BaseModel):
    token: str = Field(description="8-64 of A-Z a-z 0-9 _ -, new per submission: sending it again is answered "
                                   "'Already saved' and stores nothing", min_length=8, max_length=64)
    ranks: list[int | str] | None = Field(None, description="ranking: one rank per answer in the task's order, "
                                                            "1 = best, ties share a rank")
    reply: dict[str, Any] | None = Field(None, description="any question type's answer as its check reads it: "
                                                           "{'ranks': [...]}, pairwise {'choice', 'strength'}, "
                                                           "rating {'scores': [...]}")
    flags: list[str] = Field(default_factory=list, description="unsafe | broken | off-topic")
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)
    demonstration: str = Field("", max_length=MAX_DEMONSTRATION_CHARS, description="a better answer, written")
    next: bool = Field(True, description="also claim and return the next task (one transaction, as the page)")


class SkipIn(BaseModel):
    token: str = Field(min_length=8, max_length=64)
    flags: list[str] = Field(default_factory=list)
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)
    next: bool = True


class SubmittedOut(BaseModel):
    ranking_id: str
    duplicate: bool = Field(description="this token was sent before: nothing new was stored")
    skipped: bool
    message: str = Field(description="Saved. | Already saved. | Skipped. | Already skipped.")
    task: TaskOut | None = None
    progress: ProgressOut | None = None


class ItemsIn(BaseModel):
    round: int = Field(ge=1, description="the round the items belong to (all of one round ask one question)")
    question: str | None = Field(None, description="default: the round's question, or ranking for a new round")
    items: list[dict[str, Any]] = Field(description="records as `import --format jsonl` reads them: {prompt, answers: "
                                                    "[text | {text, model, ended}], model?, ended?}, without rankings",
                                        max_length=MAX_ITEMS_PER_CALL)
    dry_run: bool = False


class ExportIn(BaseModel):
    include_flagged: bool = False
    exclude_disabled: bool = False
    min_reliability: float | None = None
    margin_scale: float | None = None


# ---- conversions -------------------------------------------------------------------------------

def task_out(t: Task | None) -> TaskOut | None:
    if t is None:
        return None
    prev = t.previous
    return TaskOut(assignment_id=t.assignment_id, item_id=t.item_id, round=t.round, question=t.question,
                   prompt=t.prompt, prompt_text=t.prompt_text,
                   answers=[AnswerOut(label=a.label, text=a.text, ended=a.ended) for a in t.answers],
                   expires_at=t.expires_at.isoformat() + "Z",
                   previous=None if prev is None else PreviousOut(
                       ranks=t.by_shown(prev.ranks) if prev.ranks else None, skipped=prev.skipped, flags=prev.flags,
                       comment=prev.comment, demonstration=prev.demonstration, response=prev.response))


def progress_out(p: Progress) -> ProgressOut:
    return ProgressOut(done=p.done, skipped=p.skipped, remaining=p.remaining, more=p.more, today=p.today,
                       total=p.total)


def turn_out(t: Turn) -> TurnOut:
    return TurnOut(task=task_out(t.task), progress=progress_out(t.progress))


def error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


# ---- the app -----------------------------------------------------------------------------------

def build_api(store: LabelStore, export_dir: Path) -> FastAPI:
    api = FastAPI(title="ranktune labeling API", version="1",
                  description="The label store over JSON. Every route takes `Authorization: Bearer <token>` "
                              "(make one with `python -m labeling_ui create-token NAME` or in the admin tab). "
                              "See docs/api.md.",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")

    # Declared so the OpenAPI page offers "Authorize" for a token; the gate has checked it already.
    scheme = HTTPBearer(auto_error=False, description="an API token: python -m labeling_ui create-token NAME")

    def caller(request: Request, _token=Depends(scheme)) -> ReviewerInfo:
        user = request.scope.get("state", {}).get("reviewer")
        if user is None:  # the gate lets nothing through without an account; this is a second lock
            raise HTTPException(401, "API token required")
        return user

    def admin(user: ReviewerInfo = Depends(caller)) -> ReviewerInfo:
        if not user.is_admin:
            raise HTTPException(403, "admins only")
        return user

    @api.exception_handler(HTTPException)
    async def http_error(_request, err: HTTPException):
        return error(err.status_code, str(err.detail))

    @api.exception_handler(StoreUnavailable)
    async def store_down(_request, err: StoreUnavailable):
        # maybe_saved: the answer's COMMIT was cut off; sending the same token again settles it either way
        resp = error(503, str(err), retry=True, maybe_saved=err.maybe_saved)
        resp.headers["retry-after"] = "1"
        return resp

    @api.exception_handler(UnknownReviewer)
    async def gone(_request, err):
        return error(401, "this account is disabled")

    @api.exception_handler(SubmitError)
    async def refused(_request, err):
        return error(409, str(err))

    @api.exception_handler(InputError)
    async def bad_input(_request, err):
        return error(422, str(err))

    from fastapi.exceptions import RequestValidationError

    @api.exception_handler(RequestValidationError)
    async def bad_body(_request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}")

    @api.get("/docs", include_in_schema=False)
    def docs():
        static = f"{API_PREFIX}/static"
        return get_swagger_ui_html(openapi_url=f"{API_PREFIX}/openapi.json", title="ranktune labeling API",
                                   swagger_js_url=f"{static}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{static}/swagger-ui.css",
                                   swagger_favicon_url=f"{static}/favicon-32x32.png")

    # Swagger UI's files come from the swagger-ui-bundle package, not a CDN: the page works offline.
    api.mount("/static", StaticFiles(directory=swagger_ui_path), name="static")

    @api.get("/me", summary="The account this token acts for")
    def me(user: ReviewerInfo = Depends(caller)) -> dict:
        return {"name": user.name, "admin": user.is_admin}

    @api.get("/tasks/next", summary="The task on screen, or a newly claimed one, with progress")
    def next_task(user: ReviewerInfo = Depends(caller)) -> TurnOut:
        return turn_out(store.turn(user.name))

    @api.post("/tasks/{assignment_id}/submit", summary="Answer a claimed task (idempotent per token)")
    def submit(assignment_id: int, body: SubmitIn, user: ReviewerInfo = Depends(caller)) -> SubmittedOut:
        reply = body.reply if body.reply is not None else ({"ranks": body.ranks} if body.ranks is not None else None)
        if reply is None:
            raise SubmitError("Nothing was saved: send ranks (or reply) with the submission.")
        return _send(user, assignment_id, body.token, reply, body.flags, body.comment, body.demonstration, body.next)

    @api.post("/tasks/{assignment_id}/skip", summary="Skip a claimed task (idempotent per token)")
    def skip(assignment_id: int, body: SkipIn, user: ReviewerInfo = Depends(caller)) -> SubmittedOut:
        return _send(user, assignment_id, body.token, None, body.flags, body.comment, "", body.next)

    def _send(user, assignment_id, token, reply, flags, comment, demonstration, and_next) -> SubmittedOut:
        skipped = reply is None
        if and_next:
            turn = store.submit_and_next(user.name, assignment_id, token=token, skip=skipped, reply=reply,
                                         flags=flags, comment=comment, demonstration=demonstration)
            done, task, progress = turn.submitted, task_out(turn.task), progress_out(turn.progress)
        else:
            done = store.submit(user.name, assignment_id, token=token, skip=skipped, reply=reply, flags=flags,
                                comment=comment, demonstration=demonstration)
            task = progress = None
        word = "skipped" if done.skipped else "saved"
        message = f"Already {word}." if done.duplicate else f"{word.capitalize()}."
        return SubmittedOut(ranking_id=done.ranking_id, duplicate=done.duplicate, skipped=done.skipped,
                            message=message, task=task, progress=progress)

    @api.post("/undo", summary="Withdraw your latest submission and reopen its task")
    def undo(user: ReviewerInfo = Depends(caller)) -> TurnOut:
        task = store.undo_last(user.name)
        if task is None:
            raise SubmitError("Nothing to undo: you can undo only your latest submission, once.")
        return TurnOut(task=task_out(task), progress=progress_out(store.progress(user.name)))

    @api.get("/progress", summary="Your counts")
    def progress(user: ReviewerInfo = Depends(caller)) -> ProgressOut:
        return progress_out(store.progress(user.name))

    # ---- admins ------------------------------------------------------------------------------

    @api.post("/items", summary="Add items (a prompt and its answers) to a round [admin]")
    def add_items(body: ItemsIn, user: ReviewerInfo = Depends(admin)) -> dict:
        from labeling_ui.formats.jsonl import item_from

        question = body.question or store.round_question(body.round) or "ranking"
        items = []
        for i, record in enumerate(body.items):
            where = f"items[{i}]"
            if any(record.get(k) is not None for k in ("ranks", "rankings", "scores", "reviewer")):
                raise InputError("the API adds items only; bring existing rankings in with `python -m labeling_ui "
                                 "import`", where, field="rankings")
            items.append(item_from(record, where, question, i))
        if not items:
            raise InputError("no items", field="items")
        stats = store.import_items(items, body.round, question, f"api:{user.name}", "api", "api", body.dry_run)
        return {k: stats[k] for k in ("round", "question", "items", "answers", "already_in_round", "dry_run")}

    @api.get("/counts", summary="The store's counts: prompts, items, rankings, reviewers ... [admin]")
    def counts(_user: ReviewerInfo = Depends(admin)) -> dict:
        return store.counts()

    @api.post("/export", summary="Write the export folder (what the reward stage reads) [admin]")
    def run_export(body: ExportIn, user: ReviewerInfo = Depends(admin)) -> dict:
        from labeling_ui.export import export

        summary = export(store, export_dir, include_flagged=body.include_flagged,
                         exclude_disabled=body.exclude_disabled, min_reliability=body.min_reliability,
                         actor=f"api:{user.name}", margin_scale=body.margin_scale)
        return {**summary, "files": [f for f in EXPORT_FILES if (export_dir / f).is_file()]}

    @api.get("/export/{name}", summary="One file of the last export [admin]",
             responses={200: {"content": {"application/jsonl": {}}}})
    def export_file(name: str, _user: ReviewerInfo = Depends(admin)):
        if name not in EXPORT_FILES:
            raise HTTPException(404, f"no such export file; the files are {', '.join(EXPORT_FILES)}")
        path = Path(export_dir) / name
        if not path.is_file():
            raise HTTPException(404, "not exported yet: POST /api/v1/export first")
        kind = "application/json" if name.endswith(".json") else "application/jsonl"
        return FileResponse(path, media_type=kind)

    return api
