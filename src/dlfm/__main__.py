"""``python -m dlfm`` (and ``torchrun -m dlfm``) runs the command line."""

import sys

from dlfm.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
