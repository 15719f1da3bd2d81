"""`python -m reward [--config ...]` trains the reward model; `python -m reward serve --model FOLDER` serves one."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "serve":
    from reward.serve import main

    main(sys.argv[2:])
else:
    from reward.train import main

    main()
