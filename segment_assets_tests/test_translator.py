"""The default translator's specs: an asset's description points at its history table."""

from __future__ import annotations

from segment_assets.api.streams import STREAMS
from segment_assets.orchestration.connections import connection_from_env
from segment_assets.orchestration.translator import SegmentTranslator


def test_descriptions_name_the_history_table_of_streams_that_keep_changes() -> None:
    translator, connection = SegmentTranslator(), connection_from_env({})
    sources = translator.get_description(STREAMS["sources"], connection, "segment.sources")
    assert "`segment.sources__history`" in sources
    audit = translator.get_description(STREAMS["audit_events"], connection, "segment.audit_events")
    assert "__history" not in audit  # time-partitioned: no change table, no history
