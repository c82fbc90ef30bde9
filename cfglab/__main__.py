from cfglab.cli import main

main()
