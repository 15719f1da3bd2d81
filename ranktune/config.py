"""Stage configuration the TRL way: dataclasses parsed by `TrlParser` from a YAML file plus
command-line overrides (`python -m sft --config configs/sft.yaml --learning_rate 1e-4`)."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

from ranktune.errors import InputError


def parse_config(dataclass_types, args: list[str] | None = None):
    """Parse `--config FILE` and overrides into instances of `dataclass_types` (a tuple).

    A missing or malformed config file, or an unknown key in it, is a one-line error.
    """
    from trl import TrlParser

    args = list(sys.argv[1:] if args is None else args)
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise InputError("--config needs a YAML file path")
        cfg = Path(args[i + 1])
        if not cfg.is_file():
            raise InputError("config file not found", cfg)
        _check_yaml(cfg)
    parser = TrlParser(dataclass_types)
    _cpu_defaults(parser)
    parser.error = _raise_arg_error  # argparse would print usage and exit: one line naming the setting instead
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
            configs = parser.parse_args_and_config(args=args)
    except ValueError as err:
        message = str(err).splitlines()[0]
        unknown = re.findall(r"'--([^']+)'", message) if message.startswith("Unknown arguments") else []
        if unknown:
            where = args[args.index("--config") + 1] if "--config" in args else None
            raise InputError(f"unknown setting(s): {', '.join(unknown)} (see --help for the valid ones)",
                             where) from None
        raise InputError(message) from None
    except _ArgError as err:
        where = args[args.index("--config") + 1] if "--config" in args else None
        raise InputError(f"{err} (in {where} or on the command line)" if where else str(err)) from None
    except SystemExit as err:
        if err.code in (0, None):  # --help
            raise
        raise InputError("bad command-line arguments (see the message above, or --help)") from None
    _warn_if_bf16_is_emulated(configs)
    return configs


def _native_cpu_bf16() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # AVX-512 BF16 or AMX


def _warn_if_bf16_is_emulated(configs) -> None:
    """bf16 asked for on a CPU with no bf16 arithmetic (AVX2 only): every matmul is emulated. One
    reward-model training step of the 135M model did not end in 5 minutes where fp32 took 31 s
    (2026-12-04, benchmarks/RESULTS.md): a run that looks hung, so say why before it starts."""
    import torch

    if torch.cuda.is_available() or not any(getattr(c, "bf16", False) is True for c in configs):
        return
    if not _native_cpu_bf16():
        print(f"warning: bf16 on this CPU ({torch.backends.cpu.get_cpu_capability()}, no AVX-512 BF16 or AMX) is "
              "emulated and many times slower than fp32: set --bf16 false", file=sys.stderr)


class _ArgError(Exception):
    pass


def _raise_arg_error(message: str):
    raise _ArgError(message.replace("argument ", "setting ", 1))


def _cpu_defaults(parser) -> None:
    """TRL defaults to bf16 and gradient checkpointing, which fail or only slow down on a CPU.

    Without an accelerator both default to off, and `use_cpu` to on — which is also what makes
    processes started by `accelerate launch`/torchrun join a gloo group instead of running alone.
    A config file or the command line still wins.
    """
    import torch

    if torch.cuda.is_available():
        return
    known = {action.dest for action in parser._actions}
    cpu = {"bf16": False, "gradient_checkpointing": False, "use_cpu": True}
    parser.set_defaults(**{k: v for k, v in cpu.items() if k in known})


def _check_yaml(path: Path) -> None:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=True) for k, _ in node.value]
            dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
            if dup is not None:
                raise InputError(f"setting '{dup}' appears twice", path, node.start_mark.line + 1)
            return super().construct_mapping(node, deep)

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except RecursionError:
        raise InputError("not valid YAML (nested too deeply)", path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(getattr(err, "problem", None) or err).split())  # one line
        raise InputError(f"not valid YAML ({problem})", path, line) from None
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8 text", path) from None
    if data is not None and not isinstance(data, dict):
        raise InputError("expected a mapping of setting: value", path)
    for key in data or {}:
        if not isinstance(key, str):
            raise InputError(f"setting names are text, got {key!r}", path)


def lora_config(model_args):
    """TRL's `get_peft_config`, with one target module given on the command line kept a list.

    TRL hands a lone `--lora_target_modules c_attn` to peft as a string, which peft reads as a
    regular expression over full module paths, so it matches nothing.
    """
    from trl import get_peft_config

    targets = model_args.lora_target_modules
    if isinstance(targets, str) and targets != "all-linear":
        model_args.lora_target_modules = [targets]
    return get_peft_config(model_args)
