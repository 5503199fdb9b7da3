from rlmake.cli import main

main()
