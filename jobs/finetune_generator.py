"""Entry point: `python jobs/finetune_generator.py [flags]` or, on a cluster,
`ray job submit --working-dir . -- python jobs/finetune_generator.py --dataset cub ...`.

Flags: `raysynth finetune-generator --help`.
"""

import sys
from pathlib import Path

# In a submitted job the working directory is a copy of the repository: import that copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysynth.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["finetune-generator", *sys.argv[1:]]))
