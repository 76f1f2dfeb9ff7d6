"""Entry point: `python server.py` starts the live recognizer server (see README)."""

from __future__ import annotations

import sys

from stream.server.main import main

if __name__ == "__main__":
    sys.exit(main())
