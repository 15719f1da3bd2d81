from labeling_ui.cli import main

main()
