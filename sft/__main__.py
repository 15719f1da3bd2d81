from sft.train import main

main()
