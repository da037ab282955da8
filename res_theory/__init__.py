"""res_theory: stiff order conditions of exponential integrators (SymPy), checker, solver, export.

Public API::

    from res_theory import phi, paper_phi, phi_mp, order_conditions, check, ExpTableau, Z
    from res_theory import library          # library.get("res_2s"), library.names()
    from res_theory.derive import derive    # derive(3, 3) -> Derivation
    from res_theory.export import export_all
    from res_theory.load import load        # read a res-tableau JSON back
"""

__version__ = "0.1.0"

from res_theory.check import OrderReport, check  # noqa: E402
from res_theory.conditions import OrderCondition, order_conditions  # noqa: E402
from res_theory.phi import paper_phi, phi, phi_mp  # noqa: E402
from res_theory.tableau import ExpTableau, Parameter, TableauError, Z  # noqa: E402

__all__ = [
    "ExpTableau",
    "OrderCondition",
    "OrderReport",
    "Parameter",
    "TableauError",
    "Z",
    "check",
    "order_conditions",
    "paper_phi",
    "phi",
    "phi_mp",
]
