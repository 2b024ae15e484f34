"""The command line and what it prints: commands, the run summary, the docs, the Databricks bundle."""

from wootric_ingest.cli.commands import COMMANDS, main

__all__ = ["COMMANDS", "main"]
