"""Settings of the labeling app, parsed TRL-style (configs/label.yaml + command-line overrides).

Every subcommand parses all of these groups, so one YAML file serves them all; each
subcommand reads only the groups it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StoreArguments:
    run: str = field(default="default", metadata={"help": "Run name: the store is <runs_dir>/<run>/labels.db."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder holding all runs."})
    db: str | None = field(
        default=None, metadata={"help": "A database URL instead of the run's SQLite file, e.g. "
                                        "postgresql://user:pass@host/labels for a team."})
    overlap: int = field(default=2, metadata={"help": "How many different reviewers rank each item."})
    claim_timeout_minutes: float = field(
        default=30, metadata={"help": "A claimed item not submitted within this time is offered to others again."})
    round: int | None = field(
        default=None, metadata={"help": "generate: the round the answers belong to (default: the latest round if "
                                        "it has the same policy, else a new one). serve: only offer this round. "
                                        "import: the round to import into (default: a new one). export --format "
                                        "argilla|label-studio: only this round."})
    gold_rate: int = field(
        default=20, metadata={"help": "serve/simulate: one claim in this many is a gold (known-answer) item the "
                                      "reviewer has not seen, while gold items are left (0 = never). Import them "
                                      "with `python -m labeling_ui gold --file`."})
    shuffle_answers: bool = field(
        default=True, metadata={"help": "serve/simulate: show each reviewer an item's answers in an order of their own "
                                        "(drawn once per claim and stored with it), so position bias (people "
                                        "favour what comes first) does not point the same way for everyone. "
                                        "false: every reviewer sees the generated order."})


@dataclass
class GenerateArguments:
    policy: str = field(default="smollm2-135m",
                        metadata={"help": "The model that writes the answers: bundled name, model folder or hub id."})
    prompts: str = field(default="data/prompts.jsonl", metadata={"help": "Prompts file (JSONL with 'prompt')."})
    k: int = field(default=4, metadata={"help": "Answers sampled per prompt."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use only the first N prompts."})
    temperature: float = field(default=0.9, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling: keep the smallest token set with this mass."})
    max_new_tokens: int = field(default=160, metadata={"help": "Answers longer than this are cut off (and marked so)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call (each sampled k times)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    question: str = field(
        default="ranking", metadata={"help": "What reviewers are asked about this round's items: ranking (order the "
                                           "answers, ties allowed), pairwise (2 answers: which is better and by how "
                                           "much) or rating (1-7 per answer). See labeling_ui/questions/."})
    engine: str = field(default="generate",
                        metadata={"help": "generate (KV cache) or continuous_batching (transformers' paged engine, "
                                          "for many prompts on a GPU)."})
    sampling_weights: str = field(
        default="fp32", metadata={"help": "fp32 (the policy itself) or int8 (an int8 dynamic-quantised copy, "
                                          "ranktune/quantize.py: faster sampling on a CPU, see docs/scaling.md; "
                                          "the answers then come from a slightly different model than the "
                                          "policy)."})
    select: str = field(
        default="order", metadata={"help": "Which prompts reviewers get (labeling_ui/selection.py): order (every "
                                         "prompt, in file order: no choice made), random (a seeded draw of "
                                         "select_count from the pool) or uncertainty (answer the whole pool, score "
                                         "it with the select_reward_model ensemble, send the select_count items "
                                         "whose answer pairs its members disagree on most). See docs/labeling.md."})
    select_count: int | None = field(
        default=None, metadata={"help": "random/uncertainty: how many items the round gets in all (the reviewers' "
                                        "budget; a rerun tops the round up to it). Unset: the whole pool, served "
                                        "in the order chosen."})
    select_pool: int | None = field(
        default=None, metadata={"help": "random/uncertainty: the candidates are the first N prompts that have no "
                                        "item in the round yet (unset: all of them). uncertainty samples answers "
                                        "for every candidate, so this is the cost."})
    select_reward_model: str | None = field(
        default=None, metadata={"help": "uncertainty: a reward model folder with 2 or more ensemble members "
                                        "(RewardScorer.members), e.g. the previous round's runs/<run>/reward."})
    select_diversity: float = field(
        default=0.5, metadata={"help": "uncertainty: how much a candidate loses for looking like a prompt already "
                                       "chosen (or already in the round): its uncertainty, as a share of the "
                                       "pool's highest, minus this times the largest cosine similarity of its "
                                       "prompt to theirs (character 3-grams). 0 = uncertainty alone."})


@dataclass
class ServeArguments:
    host: str = field(default="127.0.0.1", metadata={"help": "Address to bind. Anything but loopback needs TLS."})
    port: int = field(default=7860, metadata={"help": "Port to listen on."})
    ssl_certfile: str | None = field(default=None, metadata={"help": "TLS certificate (PEM) for HTTPS."})
    ssl_keyfile: str | None = field(default=None, metadata={"help": "TLS private key (PEM) for HTTPS."})
    guidelines: str | None = field(default=None,
                                   metadata={"help": "Markdown file with the reviewer guidelines "
                                                     "(default: labeling_ui/guidelines.md)."})
    session_hours: float = field(default=12, metadata={"help": "How long a login lasts."})
    max_login_failures: int = field(default=5,
                                    metadata={"help": "Failed logins for one name from one client address within "
                                                      "login_window_minutes before that client is refused that name "
                                                      "for the window (others can still log in as it)."})
    max_login_failures_per_client: int = field(default=20, metadata={"help": "The same, per client address."})
    login_window_minutes: float = field(default=15, metadata={"help": "Window for counting failed logins."})
    answer_slots: int = field(default=8, metadata={"help": "Most answers one item may show (page layout)."})
    api_rate_per_second: float = field(
        default=20.0, metadata={"help": "JSON API (/api/v1): requests per second one token may make on average "
                                        "(0 = no limit); more are answered 429 with Retry-After."})
    api_burst: float = field(default=40.0, metadata={"help": "JSON API: requests one token may make at once "
                                                             "before the per-second rate applies."})
    arena: bool = field(default=True, metadata={"help": "Serve the Arena tab (reviewers chat with two anonymous "
                                                        "models of the run and vote) when the run has two models."})


@dataclass
class ExportArguments:
    include_flagged: bool = field(default=False,
                                  metadata={"help": "Also export items a reviewer flagged (unsafe/broken/off-topic)."})
    out: str | None = field(default=None, metadata={"help": "Export folder (default: <runs_dir>/<run>/export)."})
    exclude_disabled: bool = field(
        default=False, metadata={"help": "Leave out the rankings and written answers of disabled reviewers."})
    min_reliability: float | None = field(
        default=None, metadata={"help": "Leave out reviewers whose estimated reliability (the Crowd-BT eta of "
                                        "labeling_ui/reliability.py: 1 = agrees with the panel, 0.5 = a coin, "
                                        "below = reverses it) is under this. Reviewers too little overlapped to "
                                        "estimate are kept and named in the summary."})
    margin_scale: float | None = field(
        default=None, metadata={"help": "Write a `margin` into pairs.jsonl: this times the pair's strength (pairwise "
                                        "questions) or rank distance, in reward logits, as TRL's RewardTrainer "
                                        "subtracts it. Unset: no margin (the distance is in `rank_distance`)."})
    ratings_as_rankings: bool = field(
        default=True, metadata={"help": "Rating questions: also export each set of 1-7 scores as the ranking it "
                                        "implies (higher score = better, equal scores tie) in rankings.jsonl and its "
                                        "pairs, so the reward model learns from them. The raw scores are always in "
                                        "ratings.jsonl; false keeps them out of rankings, pairs and consensus."})
    format: str | None = field(
        default=None, metadata={"help": "export: ranktune (the default: the files the reward stage reads), argilla "
                                        "or label-studio (items and rankings for that tool, in <runs_dir>/<run>/"
                                        "export-<format>/ unless --out; --round N: one round). import: the format "
                                        "of --file: jsonl, argilla, label-studio or oasst. See "
                                        "docs/label-formats.md."})


@dataclass
class ReviewerArguments:
    name: str | None = field(default=None, metadata={"help": "add-reviewer: the reviewer's login name."})
    admin: bool = field(default=False, metadata={"help": "add-reviewer: may see the admin tab and export."})
    password_file: str | None = field(
        default=None, metadata={"help": "add-reviewer: read the password from this file's first line "
                                        "(otherwise from stdin or a prompt)."})
    update: bool = field(default=False,
                         metadata={"help": "add-reviewer: change an existing reviewer's password/admin flag "
                                           "(a disabled reviewer stays disabled: use enable-reviewer)."})
    label: str = field(default="api", metadata={"help": "create-token: what the token is for (shown in the list)."})
    token_file: str | None = field(
        default=None, metadata={"help": "create-token: write the new token to this file (mode 600) instead of "
                                        "printing it."})


@dataclass
class GoldArguments:
    file: str | None = field(
        default=None, metadata={"help": "gold: JSONL of gold answers, one a line: {item_id, ranks | worst} marks a "
                                        "stored item, {prompt, answers, ranks | worst} adds a new one. ranks: the "
                                        "expected order (1 = best, ties allowed); worst: the 0-based position of the "
                                        "answer that must be last. import: the file (or folder) to import, in "
                                        "--format."})


@dataclass
class ImportArguments:
    """`import --format F --file PATH`; also read: --round (default: a new round), --question (default: the
    round's, or ranking for a new round)."""

    dry_run: bool = field(
        default=False, metadata={"help": "import: check the whole file against the store and print what would be "
                                         "imported, then write nothing."})
    reviewer_prefix: str = field(
        default="", metadata={"help": "import: put this before every imported reviewer's name (e.g. 'argilla-'), "
                                      "to keep accounts made by an import apart from the app's reviewers."})


@dataclass
class SimulateArguments:
    simulated_reviewers: int = field(default=3, metadata={"help": "simulate: how many simulated reviewers (sim-1, ...)."})
    reviewer_noise: float = field(default=0.3, metadata={"help": "simulate: std of each reviewer's per-answer noise."})
    reviewer_disagreement: float = field(
        default=0.5, metadata={"help": "simulate: spread of the reviewers' length tastes (how much they disagree)."})
    max_per_reviewer: int | None = field(default=None, metadata={"help": "simulate: rank at most this many each."})
    bad_reviewers: str = field(
        default="", metadata={"help": "simulate: comma-separated kinds of bad reviewers to add to the panel (random, "
                                      "lazy, adversarial, ties), named sim-bad-1, ..."})
    position_bias: float = field(
        default=0.0, metadata={"help": "simulate: how much every simulated reviewer favours answers shown early: "
                                       "the first answer shown gets this much extra utility, the last none "
                                       "(the gold score's units; reviewer_noise is its noise std)."})


@dataclass
class ArenaArguments:
    """The Arena (labeling_ui/arena/). Its answers are sampled with generate's temperature, top_p and
    max_new_tokens; arena-simulate's voters are simulate's panel (simulated_reviewers, reviewer_noise, ...)."""

    max_resident_models: int = field(
        default=2, metadata={"help": "arena: models kept loaded at once; the least recently used is unloaded to make "
                                     "room (2 = one conversation's pair)."})
    max_queue: int = field(default=8, metadata={"help": "arena: chats waiting for the models before new ones are "
                                                        "refused ('the arena is busy')."})
    rate_limit_per_minute: int = field(
        default=6, metadata={"help": "arena: messages one reviewer may send per minute (0 = no limit)."})
    max_turns: int = field(default=8, metadata={"help": "arena: turns per conversation before a new one must start."})
    arena_models: list[str] = field(
        default_factory=list, metadata={"help": "arena: models besides the run's checkpoints, each NAME=PATH or PATH "
                                                "(a model folder, or smollm2-135m for the bundled model)."})
    arena_turns: int = field(default=20, metadata={"help": "arena-simulate: how many turns the simulated voters chat."})
    arena_turns_per_conversation: int = field(
        default=2, metadata={"help": "arena-simulate: turns per simulated conversation (then a new pair is drawn)."})
    both_bad_below: float = field(
        default=0.0, metadata={"help": "arena-simulate: a voter says both_bad when both answers' utilities (gold "
                                       "score + taste + noise) are below this."})


ALL = (StoreArguments, GenerateArguments, ServeArguments, ExportArguments, ReviewerArguments, SimulateArguments,
       GoldArguments, ImportArguments, ArenaArguments)
