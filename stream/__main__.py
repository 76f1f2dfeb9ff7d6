from __future__ import annotations

import sys

from stream.cli import main

sys.exit(main())
