import sys

from nnx.cli import main

sys.exit(main())
