"""The `segment-assets` command: sync, demo, sql, doctor, init, streams, docs, simulate."""

from segment_assets.cli.commands import main

__all__ = ["main"]
