"""Component YAML files, one folder per Segment workspace: `segment_assets/defs/<name>/defs.yaml`.

```yaml
type: segment_assets.component.SegmentWorkspaceComponent
attributes:
  name: us_prod
  token_env: SEGMENT_US_TOKEN
  region: us
  duckdb_path: data/segment_assets.duckdb
```
Empty by default: with no component here and no SEGMENT_CONNECTIONS file, the code location
replicates the one workspace the environment names (zero configuration).
"""
