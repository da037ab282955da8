"""``python -m res_theory`` runs the ``res-theory`` command line interface."""

import sys

from res_theory.cli import main

sys.exit(main())
