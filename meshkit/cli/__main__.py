"""``python -m meshkit.cli``: the meshkit command."""

import sys

from meshkit.cli import main

sys.exit(main())
