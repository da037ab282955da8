"""res_torch: exponential-integrator samplers for diffusion models, driven by res-tableau files."""

from res_torch.phi import phi
from res_torch.tableau import Tableau, TableauError, available_tableaux, load_tableau

__all__ = ["Tableau", "TableauError", "available_tableaux", "load_tableau", "phi"]
