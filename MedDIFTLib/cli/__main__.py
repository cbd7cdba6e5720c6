"""``python -m MedDIFTLib.cli``: the same as the ``meddift`` command."""

import sys

from . import main

sys.exit(main())
