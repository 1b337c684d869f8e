"""`python -m vmemu`: the vmemu command."""

import sys

from .cli import main

sys.exit(main())
