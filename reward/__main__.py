from reward.train import main

main()
