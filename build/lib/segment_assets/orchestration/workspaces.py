"""Which Segment workspaces the project replicates, each with the translator that shapes its assets.

Three places name workspaces: component YAML files under `segment_assets/defs/` (a
`SegmentWorkspaceComponent`, or a subclass bringing its own translator), the connections file
named by `SEGMENT_CONNECTIONS`, and, when neither names one, the environment (zero
configuration). `resolve_workspaces` reads all three; the code location and every command
(`sync`, `doctor`, `sql`) use it, so they agree on the workspaces and on each one's asset keys.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, ComponentTree, PreviewWarning

from segment_assets.api.streams import STREAMS, StreamSpec
from segment_assets.orchestration.component import SegmentWorkspaceComponent
from segment_assets.orchestration.connections import (
    CONNECTIONS_ENV,
    Connection,
    check_distinct,
    connection_from_env,
    load_connections_file,
)
from segment_assets.orchestration.translator import SegmentTranslator

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Workspace:
    """One Segment workspace: its connection, the translator of its asset specs, and where it is
    configured (named in messages that ask the user to change a setting)."""

    connection: Connection
    translator: SegmentTranslator = field(default_factory=SegmentTranslator)
    origin: str = "the environment"

    @property
    def name(self) -> str:
        return self.connection.name

    def asset_key(self, stream: StreamSpec | str) -> AssetKey:
        return self.translator.get_asset_key(STREAMS[stream] if isinstance(stream, str) else stream, self.connection)

    def asset_keys(self) -> dict[str, AssetKey]:
        """Stream name -> asset key, for every stream the workspace selects."""
        return {s.name: self.asset_key(s) for s in self.connection.streams()}


@contextmanager
def loading_components() -> Iterator[None]:
    """Around reading the component tree: Dagster's loader of the plain `defs/__init__.py` module calls
    functions Dagster marks as preview and warns about its own calls, which says nothing to our users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        yield


def project_components() -> ComponentTree | None:
    """The component tree of `segment_assets/defs/`; None when installed as a package (a project
    using the component then loads it from its own defs folder)."""
    if not (PROJECT_ROOT / "pyproject.toml").exists():
        return None
    return ComponentTree.for_project(PROJECT_ROOT)


def resolve_workspaces(
    environ: Mapping[str, str] | None = None, components: ComponentTree | None = None
) -> list[Workspace]:
    """Every workspace configured: the components of `components` (default: the project's defs
    folder) and the SEGMENT_CONNECTIONS file; the environment's single workspace when neither
    names one. Two workspaces sharing a name or an asset key prefix are an error."""
    env = os.environ if environ is None else environ
    tree = components if components is not None else project_components()
    with loading_components():
        found = [c.workspace() for c in tree.get_all_components(SegmentWorkspaceComponent)] if tree else []
    if env.get(CONNECTIONS_ENV):
        path = env[CONNECTIONS_ENV]
        found += [Workspace(c, origin=path) for c in load_connections_file(path)]
    workspaces = found or [Workspace(connection_from_env(env))]
    check_distinct([w.connection for w in workspaces], "the configured workspaces")
    return workspaces
