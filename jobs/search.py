"""Entry point of the main job: `python jobs/search.py [flags]` or, on a cluster,
`ray job submit --working-dir . -- python jobs/search.py --dataset cub`.

With no arguments it runs the embedded default (digits). Flags: `raysynth search --help`.
"""

import sys
from pathlib import Path

# In a submitted job the working directory is a copy of the repository: import that copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysynth.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
