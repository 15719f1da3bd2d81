"""`ranktune <command> [--config FILE] [--setting value ...]`: one entry point for every stage.

Each command is exactly the `python -m ...` it names: the same YAML and flags, passed through
untouched to the stage's own `main` in this process, so its help, one-line errors and exit codes
are the stage's own (demo and arena add defaults first: see them). `ranktune <command> --help` shows
that stage's settings.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def _stage(module: str, *lead: str, prefix: tuple[str, ...] = ()) -> Callable[[list[str]], object]:
    """Call `module.main(*lead, [*prefix, *argv])`, importing the stage only when it runs."""

    def run(argv: list[str]):
        return importlib.import_module(module).main(*lead, [*prefix, *argv])

    return run


def _labels(command: str) -> Callable[[list[str]], object]:
    return _stage("labeling_ui.cli", prefix=(command,))


def _demo(argv: list[str]):
    """`make demo`: the closed loop on configs/demo.yaml (run `demo` unless --run says), then the report."""
    from report.build import main as report
    from rlhf.loop import main as loop

    run = loop(argv if "--config" in argv else ["--config", "configs/demo.yaml", *argv])
    return report(["--run", run.name, "--runs_dir", str(run.parent)])


ARENA_BASE = "base=smollm2-135m"  # the bundled model, named for the Arena


def _arena(argv: list[str]):
    """`make arena`: the labeling app with its Arena tab. The Arena needs two models: when the run's
    checkpoints and --arena_models give fewer, the bundled model joins as `base`."""
    from labeling_ui.arena.models import discover_run_models
    from labeling_ui.cli import main as labels
    from labeling_ui.config import ALL
    from ranktune.config import parse_config
    from ranktune.errors import exit_on_input_error
    from ranktune.runs import run_dir

    @exit_on_input_error
    def serve(argv: list[str]):
        store, *_, arena = parse_config(ALL, argv)
        if len(discover_run_models(run_dir(store.run, store.runs_dir))) + len(arena.arena_models) < 2:
            argv = [*argv, "--arena_models", *arena.arena_models, ARENA_BASE]
        return labels(["serve", *argv])

    return serve(argv)


# name: (what runs, one line of help)
COMMANDS: dict[str, tuple[Callable[[list[str]], object], str]] = {
    "sft": (_stage("sft.train"), "stage 1: supervised fine-tuning on demonstrations -> runs/<run>/sft (python -m sft)"),
    "generate": (_labels("generate"), "K sampled answers per prompt into the label store (python -m labeling_ui generate)"),
    "label": (_labels("serve"), "the labeling web app for reviewers (python -m labeling_ui serve)"),
    "arena": (_arena, "the labeling app with its Arena tab; the bundled model joins when the run has fewer than "
                      "two models (make arena)"),
    "simulate": (_labels("simulate"), "simulated reviewers rank every open item (python -m labeling_ui simulate)"),
    "export": (_labels("export"), "rankings, pairs, demonstrations -> runs/<run>/export (python -m labeling_ui export)"),
    "import": (_labels("import"), "items and rankings from jsonl, argilla, label-studio, oasst (python -m labeling_ui import)"),
    "gold": (_labels("gold"), "import or mark gold (known-answer) items (python -m labeling_ui gold)"),
    "add-reviewer": (_labels("add-reviewer"), "create a reviewer account: add-reviewer NAME [--admin] "
                                              "(python -m labeling_ui add-reviewer)"),
    "disable-reviewer": (_labels("disable-reviewer"), "end a reviewer's sessions and refuse their logins "
                                                      "(python -m labeling_ui disable-reviewer)"),
    "enable-reviewer": (_labels("enable-reviewer"), "let a disabled reviewer log in again "
                                                    "(python -m labeling_ui enable-reviewer)"),
    "labels": (_stage("labeling_ui.cli"), "any labeling_ui command: labels <command> ... (python -m labeling_ui)"),
    "reward": (_stage("reward.train"), "stage 2: reward model from the export -> runs/<run>/reward (python -m reward)"),
    "reward-serve": (_stage("reward.serve"), "the reward model over HTTP: POST /v1/score, GET /health "
                                             "(python -m reward serve)"),
    "rlhf": (_stage("rlhf.train"), "stage 3: our PPO against the reward model -> runs/<run>/rlhf (python -m rlhf)"),
    "dpo": (_stage("alternatives.dpo"), "TRL's DPO on the export's pairs -> runs/<run>/dpo (python -m alternatives dpo)"),
    "rloo": (_stage("alternatives.online", "rloo"), "TRL's RLOO against the reward model -> runs/<run>/rloo "
                                                    "(python -m alternatives rloo)"),
    "grpo": (_stage("alternatives.online", "grpo"), "TRL's GRPO against the reward model -> runs/<run>/grpo "
                                                    "(python -m alternatives grpo)"),
    "loop": (_stage("rlhf.loop"), "rounds of generate -> rank -> reward -> PPO (python -m rlhf loop)"),
    "demo": (_demo, "the whole loop offline on configs/demo.yaml, then the report (make demo)"),
    "report": (_stage("report.build"), "runs/<run>/report.html, self-contained (python -m report)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: ranktune <command> [--config configs/<stage>.yaml] [--setting value ...]", "",
             "commands:"]
    lines += [f"  {name:<{width}}{about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "`ranktune <command> --help` lists that stage's settings."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}' (`ranktune --help` lists them)", file=sys.stderr)
        return 2
    COMMANDS[command][0](rest)
    return 0  # a stage's failure has already ended the process with its own exit code


if __name__ == "__main__":
    sys.exit(main())
