"""Which Segment workspaces the project replicates, each with the translator that shapes its assets.

Three places name workspaces: component YAML files in a dg project's defs folder (a
`SegmentWorkspaceComponent`, or a subclass bringing its own translator), the connections file
named by `SEGMENT_CONNECTIONS`, and, when neither names one, the environment (zero
configuration). `resolve_workspaces` reads all three; the code location and every command
(`sync`, `doctor`, `sql`) use it, so they agree on the workspaces and on each one's asset keys.

Which dg project: the library's own code location reads only its own (`segment_assets/defs/` of
a source checkout; nothing once installed). The commands read the project they are run in (the
nearest folder at or above the current directory whose pyproject.toml or dg.toml declares a dg
project), so `segment-assets sync --connection my_segment` works in a user's project.
"""

from __future__ import annotations

import os
import tomllib
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
DISTRIBUTION = "segment-assets"


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
    """The component tree of the library's own `segment_assets/defs/` in a source checkout; None when
    installed as a package (a project using the component loads it from its own defs folder).

    The checkout is recognised by its pyproject.toml naming this distribution, not by a
    pyproject.toml beside the package: installed, that folder is site-packages, where other
    wheels may have left one (a project built with hatch's `force-include`)."""
    if dg_project_name(PROJECT_ROOT) != DISTRIBUTION:
        return None
    return ComponentTree.for_project(PROJECT_ROOT)


def dg_project_name(folder: Path) -> str | None:
    """The distribution name of the dg project whose configuration is in `folder`, else None."""
    for name in ("dg.toml", "pyproject.toml"):
        file = folder / name
        if not file.is_file():
            continue
        try:
            config = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            return None
        dg = config if name == "dg.toml" else config.get("tool", {}).get("dg", {})
        if dg.get("directory_type") != "project":
            return None
        return str(config.get("project", {}).get("name") or folder.name)
    return None


def find_dg_project(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: the current directory) holding a dg project."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if dg_project_name(folder) is not None:
            return folder
    return None


def current_project_components(start: Path | None = None) -> ComponentTree | None:
    """The component tree the commands read: the dg project they are run in, else the library's own."""
    root = find_dg_project(start)
    if root is None:
        return project_components()
    with loading_components():
        return ComponentTree.for_project(root)


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
