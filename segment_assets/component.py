"""Where component YAML files name the component: `type: segment_assets.component.SegmentWorkspaceComponent`.

Also what a project's own assets import to read a workspace's tables on either target:
`StorageResource` (bound as `storage_<name>`; `with storage.read_session() as con: ...`). `dg`
lists this module's component through the `dagster_dg_cli.registry_modules` entry point. The
component itself lives with the rest of the Dagster layer, in `segment_assets.orchestration`.
"""

from segment_assets.orchestration.component import SegmentWorkspaceComponent
from segment_assets.orchestration.resources import StorageResource

__all__ = ["SegmentWorkspaceComponent", "StorageResource"]
