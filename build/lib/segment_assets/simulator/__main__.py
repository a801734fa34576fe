"""``python -m segment_assets.simulator --port 8765``"""

import sys

from . import main

sys.exit(main())
