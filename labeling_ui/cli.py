"""`python -m labeling_ui <command> [--config configs/label.yaml] [--setting value ...]`

    generate      sample K answers per prompt from a policy into the label store
    add-reviewer  create a reviewer account: add-reviewer NAME [--admin] [--password_file F]
    serve         run the labeling web app (login required)
    export        write rankings, pairs and demonstrations to runs/<run>/export/
    simulate      simulated reviewers (rule-based, see ranktune/gold.py) rank every open item
    gold          import or mark gold (known-answer) items: gold --file gold.jsonl
    import        items and rankings from another tool: import --format jsonl|argilla|label-studio|oasst --file F
                  [--round N --question ranking|pairwise|rating]; export --format argilla|label-studio writes them
    arena-simulate  simulated voters chat with the run's models in the Arena and vote (--arena_turns N)
    disable-reviewer NAME   end their sessions and refuse their logins (their labels stay)
    create-token NAME [--label L] [--token_file F]   an API token acting as NAME (shown once; docs/api.md)
    revoke-token ID         the token stops working at once
    list-tokens             every API token: id, account, label, created, last used, revoked
    enable-reviewer NAME    let a disabled reviewer log in again

`python -m labeling_ui <command> --help` lists every setting.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from ranktune.config import parse_config
from ranktune.errors import InputError, exit_on_input_error
from ranktune.records import read_prompts
from ranktune.runs import check_writable, run_dir

from labeling_ui.config import (ALL, ArenaArguments, ExportArguments, GenerateArguments, GoldArguments,
                                ImportArguments, ReviewerArguments, ServeArguments, SimulateArguments, StoreArguments)
from labeling_ui.store import LabelStore

COMMANDS = ("generate", "add-reviewer", "serve", "export", "simulate", "gold", "disable-reviewer", "enable-reviewer",
            "import", "arena-simulate", "create-token", "revoke-token", "list-tokens")
# The first argument is a reviewer's name (a token's id for revoke-token).
NAMED = ("add-reviewer", "disable-reviewer", "enable-reviewer", "create-token", "revoke-token")


def open_store(a: StoreArguments, serve: ServeArguments | None = None, must_exist: bool = False) -> LabelStore:
    if a.claim_timeout_minutes <= 0:
        raise InputError("must be more than 0", field="claim_timeout_minutes")
    kwargs = {"gold_rate": a.gold_rate, "shuffle": a.shuffle_answers}
    if serve is not None:
        kwargs |= {"round": a.round, "max_failures": serve.max_login_failures,
                  "max_failures_per_client": serve.max_login_failures_per_client,
                  "window_s": serve.login_window_minutes * 60, "session_s": serve.session_hours * 3600}
    return LabelStore.for_run(a.run, a.runs_dir, a.db, must_exist=must_exist, overlap=a.overlap,
                              claim_timeout_s=a.claim_timeout_minutes * 60, **kwargs)


def cmd_generate(a: StoreArguments, g: GenerateArguments) -> dict:
    from labeling_ui.generate import check_selection, generate, pick_round
    from labeling_ui.questions import question

    checks = [(g.k >= 2, "k", "must be at least 2 (reviewers compare answers)"),
              (g.temperature > 0, "temperature", "must be more than 0"),
              (0 < g.top_p <= 1, "top_p", "must be in (0, 1]"),
              (g.max_new_tokens >= 1, "max_new_tokens", "must be at least 1"),
              (g.batch_size >= 1, "batch_size", "must be at least 1")]
    unfit = question(g.question).fits(g.k)  # an unknown question type fails here too
    if unfit:
        raise InputError(unfit, field="k")
    for ok, name, message in checks:
        if not ok:
            raise InputError(message, field=name)
    check_selection(g)
    if not a.db:
        check_writable(run_dir(a.run, a.runs_dir), min_free_bytes=256 * 1024**2)
    prompts = read_prompts(g.prompts)  # bad input fails here, before a model loads
    if g.max_prompts:
        prompts = prompts[:g.max_prompts]
    store = open_store(a)
    try:
        round_ = pick_round(store, g.policy, a.round)
        stats = generate(store, [p["prompt"] for p in prompts], g, round_)
    finally:
        store.close()
    chosen = ""
    if g.select != "order":
        chosen = (f"; --select {g.select}: {stats['items_written']} chosen from a pool of {stats['pool']}"
                  + (f" (all {stats['scored']} scored by {stats['members']} members)" if stats.get("scored") else "")
                  + (f", {stats['already_chosen']} chosen before" if stats["already_chosen"] else ""))
    print(f"round {stats['round']} ({stats['policy']}): {stats['items_written']} new items, "
          f"{stats['answers_written']} answers ({stats['cut_off']} cut off at max_new_tokens); "
          f"{stats['already_done']} prompts already had answers in this round"
          + (f"; {stats['duplicates']} duplicate prompts asked once" if stats["duplicates"] else "") + chosen)
    return stats



def _read_password(r: ReviewerArguments) -> str:
    if r.password_file:
        path = Path(r.password_file)
        if not path.is_file():
            raise InputError("password file not found", path)
        lines = path.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {r.name}: ")
        if getpass.getpass("again: ") != first:
            raise InputError("the two passwords differ", field="password")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_add_reviewer(a: StoreArguments, r: ReviewerArguments):
    if not r.name:
        raise InputError("usage: python -m labeling_ui add-reviewer NAME [--admin] [--password_file FILE]")
    store = open_store(a)
    try:
        user = store.accounts.add(r.name, _read_password(r), admin=r.admin, update=r.update)
    finally:
        store.close()
    print(f"{'updated' if r.update else 'added'} {'admin' if user.is_admin else 'reviewer'} '{user.name}' "
          f"in {store.db.display()}")
    return user


def open_arena(store: LabelStore, a: StoreArguments, g: GenerateArguments, r: ArenaArguments):
    """The Arena of a served store: (ArenaStore, ArenaEngine, suggested prompts), or None when the
    run has fewer than two models to pit against each other (the page then has no Arena tab)."""
    from labeling_ui.arena.models import ArenaEngine
    from labeling_ui.arena.store import ArenaStore

    arena = ArenaStore(store, rate_limit_per_minute=r.rate_limit_per_minute, max_turns=r.max_turns)
    arena.refresh_models(run_dir(a.run, a.runs_dir))
    for name, path in arena_model_args(r.arena_models):
        arena.add_model(name, path, cli_actor(), update=True)
    names = [x.name for x in arena.models()]
    if len(names) < 2:
        print(f"note: no Arena tab: it needs two models, found {names or 'none'} (add --arena_models NAME=PATH; "
              "smollm2-135m is the bundled model)", flush=True)
        return None
    engine = ArenaEngine(arena.model_path, max_resident=r.max_resident_models, max_queue=r.max_queue,
                         max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p)
    print(f"arena: {', '.join(names)}", flush=True)
    return arena, engine, store.prompt_texts(limit=30)


def cmd_serve(a: StoreArguments, s: ServeArguments, g: GenerateArguments | None = None,
              r: ArenaArguments | None = None):
    from labeling_ui.server import serve

    for path in (s.ssl_certfile, s.ssl_keyfile, s.guidelines):
        if path and not Path(path).is_file():
            raise InputError("file not found", path)
    if bool(s.ssl_certfile) != bool(s.ssl_keyfile):
        raise InputError("TLS needs both --ssl_certfile and --ssl_keyfile")
    store = open_store(a, s, must_exist=True)
    arena = open_arena(store, a, g, r) if s.arena and g is not None and r is not None else None
    try:
        serve(store, s.host, s.port, run_dir(a.run, a.runs_dir) / "export", s.guidelines, s.answer_slots,
              s.ssl_certfile, s.ssl_keyfile, arena=arena, api_rate_per_second=s.api_rate_per_second,
              api_burst=s.api_burst)
    finally:
        if arena is not None:
            arena[1].close()


def cmd_export(a: StoreArguments, e: ExportArguments) -> dict:
    from labeling_ui.export import export
    from labeling_ui.formats import DEFAULT_EXPORT

    if e.format not in (None, DEFAULT_EXPORT):
        return cmd_export_format(a, e)
    out = Path(e.out) if e.out else run_dir(a.run, a.runs_dir) / "export"
    check_writable(out.parent, min_free_bytes=64 * 1024**2)
    store = open_store(a, must_exist=True)
    try:
        summary = export(store, out, include_flagged=e.include_flagged, exclude_disabled=e.exclude_disabled,
                         min_reliability=e.min_reliability, actor=cli_actor(), margin_scale=e.margin_scale,
                         ratings_as_rankings=e.ratings_as_rankings)
    finally:
        store.close()
    held = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in summary["rankings_held_out"].items() if n)
    print(f"exported {summary['rankings']} rankings, {summary['pairs']} pairs, {summary['consensus_rankings']} "
          f"consensus rankings, {summary['demonstrations']} approved demonstrations to {out}"
          f" (rankings held out: {held or 'none'}; {summary['tied_pairs']} tied pairs make no pair)")
    for line in summary["notes"]:
        print(f"note: {line}")
    return summary


def cmd_export_format(a: StoreArguments, e: ExportArguments) -> dict:
    """`export --format argilla|label-studio`: the store's items and rankings as that tool's files."""
    from labeling_ui.formats import export_store, label_format

    label_format(e.format, reading=False)  # an unknown format fails before anything is opened
    out = Path(e.out) if e.out else run_dir(a.run, a.runs_dir) / f"export-{e.format}"
    check_writable(out.parent, min_free_bytes=64 * 1024**2)
    store = open_store(a, must_exist=True)
    try:
        summary = export_store(store, e.format, out, a.round)
        store.record_action(cli_actor(), "export", str(out), format=e.format, items=summary["items"],
                            rankings=summary["rankings"])
    finally:
        store.close()
    lost = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in summary["left_out"].items())
    print(f"exported {summary['items']} items with {summary['rankings']} rankings as {e.format} to {out} "
          f"({', '.join(summary['files'])})" + (f"; left out: {lost}" if lost else ""))
    return summary


def cmd_import(a: StoreArguments, e: ExportArguments, g: GoldArguments, i: ImportArguments,
               question: str | None) -> dict:
    from labeling_ui.formats import import_file, label_format

    label_format(e.format, reading=True)
    if not g.file:
        raise InputError("usage: python -m labeling_ui import --format FORMAT --file PATH", field="file")
    if not a.db:
        check_writable(run_dir(a.run, a.runs_dir), min_free_bytes=64 * 1024**2)
    store = open_store(a)
    try:
        stats = import_file(store, e.format, g.file, a.round, question, cli_actor(), i.dry_run, i.reviewer_prefix)
    finally:
        store.close()
    print(("dry run, nothing written: would import " if stats["dry_run"] else "imported ")
          + f"{stats['items']} items ({stats['answers']} answers) and {stats['rankings']} rankings from {g.file} "
          f"into round {stats['round']} ({stats['question']}) of {store.db.display()}"
          + (f"; {stats['already_in_round']} prompts were in the round already (left out, with their rankings)"
             if stats["already_in_round"] else "")
          + (f"; new reviewer accounts (no usable password): {', '.join(stats['reviewers_added'])}"
             if stats["reviewers_added"] else ""))
    return stats


def cli_actor() -> str:
    """Who did an admin action from the command line, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (some containers)
        return "cli"


def cmd_gold(a: StoreArguments, g: GoldArguments) -> list[int]:
    from ranktune.jsonl import read_jsonl

    if not g.file:
        raise InputError("usage: python -m labeling_ui gold --file gold.jsonl", field="file")
    records = read_jsonl(g.file, lambda obj, path, lineno: {**obj, "where": f"{path}:{lineno}"}, "gold answers")
    store = open_store(a, must_exist=True)
    try:
        ids = store.add_gold(records, cli_actor())
    finally:
        store.close()
    print(f"{len(ids)} gold items in {store.db.display()} (served one claim in {a.gold_rate}; "
          "never exported for training)")
    return ids


def cmd_tokens(a: StoreArguments, r: ReviewerArguments, command: str):
    """create-token NAME / revoke-token ID / list-tokens."""
    import os

    store = open_store(a, must_exist=True)
    try:
        if command == "list-tokens":
            rows = store.tokens.all()
            for t in rows:
                state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
                used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
                print(f"{t.id:>4}  {t.shown}...  {t.reviewer}{' (admin)' if t.is_admin else ''}  '{t.label}'  "
                      f"created {t.created_at:%Y-%m-%d %H:%M} by {t.created_by}  last used {used}  {state}")
            if not rows:
                print("no API tokens yet: python -m labeling_ui create-token NAME")
            return rows
        if not r.name:
            raise InputError(f"usage: python -m labeling_ui {command} {'NAME' if command == 'create-token' else 'ID'}")
        if command == "revoke-token":
            try:
                token_id = int(r.name)
            except ValueError:
                raise InputError("expected the token's id (a number, from list-tokens)", field="token_id") from None
            info = store.tokens.revoke(token_id, cli_actor())
            print(f"revoked API token {info.id} ({info.shown}..., {info.reviewer}, '{info.label}')")
            return info
        info, token = store.tokens.create(r.name, r.label, cli_actor())
    finally:
        store.close()
    role = "admin" if info.is_admin else "reviewer"
    if r.token_file:
        path = Path(r.token_file)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        print(f"API token {info.id} for {role} '{info.reviewer}' ('{info.label}') written to {path}")
    else:
        print(f"API token {info.id} for {role} '{info.reviewer}' ('{info.label}'); it is shown only now:\n{token}")
    return info, token


def cmd_set_disabled(a: StoreArguments, r: ReviewerArguments, disabled: bool) -> None:
    if not r.name:
        raise InputError(f"usage: python -m labeling_ui {'disable' if disabled else 'enable'}-reviewer NAME")
    store = open_store(a, must_exist=True)
    try:
        store.set_disabled(cli_actor(), r.name, disabled)
    finally:
        store.close()
    print(f"{'disabled' if disabled else 'enabled'} reviewer '{r.name}'"
          + (" (sessions ended; labels kept: export --exclude_disabled true leaves them out)" if disabled else ""))


def cmd_simulate(a: StoreArguments, m: SimulateArguments, seed: int) -> dict:
    from labeling_ui.simulate import bad_panel, default_panel, simulate_reviews

    if m.simulated_reviewers < 1:
        raise InputError("must be at least 1", field="simulated_reviewers")
    store = open_store(a, must_exist=True)
    try:
        panel = default_panel(m.simulated_reviewers, m.reviewer_noise, m.reviewer_disagreement, seed, m.position_bias)
        panel += bad_panel(m.bad_reviewers, seed, m.reviewer_noise)
        stats = simulate_reviews(store, panel, m.max_per_reviewer)
    finally:
        store.close()
    print(f"{stats['rankings']} rankings by simulated reviewers "
          + ", ".join(f"{k}: {v}" for k, v in stats["per_reviewer"].items()))
    return stats


def arena_model_args(entries: list[str]) -> list[tuple[str, str]]:
    """--arena_models entries (NAME=PATH or PATH) as (name, path); a PATH's name is its folder's name."""
    out = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = Path(entry.rstrip("/")).name or entry, entry
        out.append((name.strip(), path.strip()))
    return out


def cmd_arena_simulate(a: StoreArguments, g: GenerateArguments, m: SimulateArguments, r: ArenaArguments) -> dict:
    from labeling_ui.arena.models import ArenaEngine
    from labeling_ui.arena.simulate import ArenaVoter, simulate_arena
    from labeling_ui.arena.store import ArenaStore
    from labeling_ui.simulate import default_panel, ensure_accounts

    checks = [(r.arena_turns >= 1, "arena_turns"), (m.simulated_reviewers >= 1, "simulated_reviewers"),
              (r.arena_turns_per_conversation >= 1, "arena_turns_per_conversation")]
    for ok, name in checks:
        if not ok:
            raise InputError("must be at least 1", field=name)
    prompts = [p["prompt"] for p in read_prompts(g.prompts)][:g.max_prompts or None]
    store = open_store(a)
    try:
        arena = ArenaStore(store, rate_limit_per_minute=None, max_turns=r.max_turns)  # simulated: no rate limit
        arena.refresh_models(run_dir(a.run, a.runs_dir))
        for name, path in arena_model_args(r.arena_models):
            arena.add_model(name, path, cli_actor(), update=True)
        names = [x.name for x in arena.models()]
        if len(names) < 2:
            raise InputError(f"the arena needs at least two models, found {names or 'none'} in "
                             f"{run_dir(a.run, a.runs_dir)}: add some with --arena_models NAME=PATH (smollm2-135m is "
                             "the bundled model)", field="arena_models")
        panel = default_panel(m.simulated_reviewers, m.reviewer_noise, m.reviewer_disagreement, g.seed)
        ensure_accounts(store, panel)
        voters = [ArenaVoter(p, r.both_bad_below) for p in panel]
        with ArenaEngine(arena.model_path, max_resident=r.max_resident_models, max_queue=r.max_queue,
                         max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                         seed=g.seed) as engine:
            stats = simulate_arena(arena, engine, voters, prompts, r.arena_turns, r.arena_turns_per_conversation)
    finally:
        store.close()
    print(f"arena: {stats['turns']} turns in {stats['conversations']} conversations by simulated voters "
          f"({', '.join(f'{k} {v}' for k, v in stats['outcomes'].items())}); models: {', '.join(names)}")
    return stats


@exit_on_input_error
def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return None
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise InputError(f"unknown command '{command}'; expected one of: {', '.join(COMMANDS)}")
    if command in NAMED and rest and not rest[0].startswith("-"):
        rest = ["--name", rest[0], *rest[1:]]
    store_args, gen_args, serve_args, export_args, reviewer_args, simulate_args, gold_args, import_args, arena_args = \
        parse_config(ALL, rest)
    if command == "generate":
        return cmd_generate(store_args, gen_args)
    if command == "add-reviewer":
        return cmd_add_reviewer(store_args, reviewer_args)
    if command == "serve":
        return cmd_serve(store_args, serve_args, gen_args, arena_args)
    if command == "simulate":
        return cmd_simulate(store_args, simulate_args, gen_args.seed)
    if command == "gold":
        return cmd_gold(store_args, gold_args)
    if command == "import":  # --question on the command line; otherwise the round's (or ranking)
        given = any(x == "--question" or x.startswith("--question=") for x in rest)
        return cmd_import(store_args, export_args, gold_args, import_args, gen_args.question if given else None)
    if command == "arena-simulate":
        return cmd_arena_simulate(store_args, gen_args, simulate_args, arena_args)
    if command in ("create-token", "revoke-token", "list-tokens"):
        return cmd_tokens(store_args, reviewer_args, command)
    if command in ("disable-reviewer", "enable-reviewer"):
        return cmd_set_disabled(store_args, reviewer_args, command == "disable-reviewer")
    return cmd_export(store_args, export_args)
