"""`python -m raysynth ...`: the `raysynth` command."""

import sys

from raysynth.cli import main

sys.exit(main())
