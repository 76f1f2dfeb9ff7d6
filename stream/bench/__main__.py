from __future__ import annotations

import sys

from stream.bench import main

sys.exit(main())
