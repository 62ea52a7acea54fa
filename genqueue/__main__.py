"""`python -m genqueue ...`: the same command as the `genqueue` script."""

from genqueue.cli.main import main

main()
