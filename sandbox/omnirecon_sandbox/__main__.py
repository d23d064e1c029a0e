import sys

from omnirecon_sandbox.cli import main

sys.exit(main())
