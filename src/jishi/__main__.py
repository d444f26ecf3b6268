"""`python -m jishi …` is the `jishi` command."""

from jishi.cli.main import main

main()
