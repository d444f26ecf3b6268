"""The `jishi` command line: `jishi.cli.main:app` (typer) and `main()`, the console script.

`jishi.cli.up.Platform` runs and supervises the control plane, gateway and agent for `jishi up`;
`jishi.cli.status` renders `jishi status` and `jishi routes`.
"""
