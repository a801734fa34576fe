"""Where component YAML files name the component: `type: segment_assets.component.SegmentWorkspaceComponent`.

The component itself lives with the rest of the Dagster layer, in `segment_assets.orchestration`.
"""

from segment_assets.orchestration.component import SegmentWorkspaceComponent

__all__ = ["SegmentWorkspaceComponent"]
