"""The Segment Public API: the spec, the stream declarations and table shapes, the HTTP client,
its paging, errors and rate limits. Imports nothing from Dagster or from the layers above."""
