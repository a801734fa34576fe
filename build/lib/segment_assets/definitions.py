"""The code location `workspace.yaml`, `dagster dev -m` and the deployment images load.

It holds only `defs`; how the workspaces become definitions is in `segment_assets.orchestration`.
"""

from segment_assets.orchestration.definitions import code_location

defs = code_location()
