"""The Dagster layer: workspaces (connections, the component), assets, translator, resources,
partitions, jobs and schedules, the audit-trail sensor, freshness, maintenance, definitions."""
