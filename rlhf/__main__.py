from rlhf.train import main

main()
