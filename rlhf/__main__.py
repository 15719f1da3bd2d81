"""`python -m rlhf [--config ...]` trains PPO; `python -m rlhf loop [--config ...]` runs the closed loop."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "loop":
    from rlhf.loop import main

    main(sys.argv[2:])
else:
    from rlhf.train import main

    main()
