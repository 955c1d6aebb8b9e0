"""`python -m tools.load`."""

import sys

from tools.load.run import main

sys.exit(main())
