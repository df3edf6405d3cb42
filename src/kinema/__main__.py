"""``python -m kinema`` (and ``torchrun -m kinema``) run the CLI."""

import sys

from kinema.cli import main

sys.exit(main())
