"""Reading streams: planning requests, reading pages into Arrow, resumable fan-out cycles, time
windows, running the streams of a run concurrently, progress. Imports nothing from Dagster; writes
through the `storage.Target` interface."""
