import sys

from gera.cli import main

sys.exit(main())
