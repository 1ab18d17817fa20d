from dlcr_data.cli import main

main()
