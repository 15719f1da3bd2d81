from report.build import main

main()
