from rlmake.cli import main

main(prog_name="rlmake")
