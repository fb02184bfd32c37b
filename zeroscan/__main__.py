import sys

from zeroscan.cli import main

sys.exit(main())
