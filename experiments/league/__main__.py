"""``python -m experiments.league [--quick] [--device D] [--out DIR]``."""

from experiments.league.run import main

main()
