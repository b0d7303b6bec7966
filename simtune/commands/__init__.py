"""One module per ``simtune`` subcommand, each with ``register(subparsers)``."""
