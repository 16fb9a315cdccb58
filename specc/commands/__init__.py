"""CLI commands; every module here registers its commands on ``specc.cli.app``."""
