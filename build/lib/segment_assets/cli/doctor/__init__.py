"""`segment-assets doctor`: is a workspace connection ready to sync, and what will a full sync cost?

For each configured workspace (or the one named), with few requests: `probe` checks the token,
its region and the feature-gated areas; `estimate` counts the requests and the least time a full
sync takes at the documented rate limits; `report` prints both and is the command.
"""

from segment_assets.cli.doctor.report import main

__all__ = ["main"]
