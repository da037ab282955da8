"""``python -m experiments.convergence``: the convergence study's command line."""

from experiments.convergence.study import main

raise SystemExit(main())
