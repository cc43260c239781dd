import sys

from gadget.cli import main

sys.exit(main())
