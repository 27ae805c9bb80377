import sys

from fmpbench.cli import main

sys.exit(main())
