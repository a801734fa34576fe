"""Where replicated tables land: the `Target` interface and its implementations."""

from segment_assets.storage.base import (
    CHANGE_SUFFIX,
    DEFAULT_SCHEMA,
    HEADER_COLUMNS,
    KeyCheck,
    StorageError,
    Target,
    WriteResult,
)
from segment_assets.storage.changes import q
from segment_assets.storage.duckdb_target import DEFAULT_MEMORY_LIMIT, DuckDBTarget

__all__ = [
    "CHANGE_SUFFIX",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_SCHEMA",
    "HEADER_COLUMNS",
    "DuckDBTarget",
    "KeyCheck",
    "StorageError",
    "Target",
    "WriteResult",
    "q",
]
