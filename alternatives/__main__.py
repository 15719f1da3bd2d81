"""`python -m alternatives {dpo,rloo,grpo} --config configs/<method>.yaml --run NAME [overrides]`."""

import sys

USAGE = "usage: python -m alternatives {dpo,rloo,grpo} --config configs/<method>.yaml --run NAME [overrides]"

method = sys.argv[1] if len(sys.argv) > 1 else ""
if method == "dpo":
    from alternatives.dpo import main

    main(sys.argv[2:])
elif method in ("rloo", "grpo"):
    from alternatives.online import main

    main(method, sys.argv[2:])
else:
    print(f"error: unknown method '{method}'\n{USAGE}" if method not in ("", "-h", "--help") else USAGE,
          file=sys.stderr)
    sys.exit(0 if method in ("-h", "--help") else 2)
