"""The code location `workspace.yaml`, `dagster dev -m` and the deployment images load.

It holds only `defs`, built when Dagster asks for it (`@definitions`), never when the module is
imported: a project that uses the component imports this package without building the library's
own code location (which reads SEGMENT_CONNECTIONS and SEGMENT_TARGET). How the workspaces
become definitions is in `segment_assets.orchestration`.
"""

from dagster import Definitions, definitions

from segment_assets.orchestration.definitions import code_location


@definitions
def defs() -> Definitions:
    return code_location()
