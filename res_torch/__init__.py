"""res_torch: exponential-integrator samplers for diffusion models, driven by res-tableau files."""

from res_torch.adapters import (
    DiscreteEpsDenoiser,
    DiscreteSchedule,
    DiscreteVDenoiser,
    EDMDenoiser,
    FlowDenoiser,
)
from res_torch.adaptive import PIDController, sample_res_adaptive
from res_torch.coefficients import Coefficients, StepCoefficients, coefficients
from res_torch.errors import NoiseError, ResError, StepSizeError
from res_torch.grid import SigmasError, StepGrid, make_grid
from res_torch.methods import METHODS, Method, method_of
from res_torch.nfe import NFEBudgetError, evaluations_per_step, nfe, sigmas_for_nfe
from res_torch.noise import NoiseOptions, ancestral_step, churn_gamma, default_noise_sampler
from res_torch.phi import phi
from res_torch.samplers import (
    SAMPLERS,
    UnknownMethodError,
    sample,
    sample_ddim,
    sample_deis,
    sample_dpmpp_2m,
    sample_dpmpp_2s,
    sample_dpmpp_3m,
    sample_erk,
    sample_euler,
    sample_heun,
    sample_ipndm,
    sample_ipndm_v,
    sample_method,
    sample_res_2m,
    sample_res_2s,
    sample_res_3m,
    sample_res_3s,
)
from res_torch.schedules import (
    ScheduleError,
    get_sigmas_exponential,
    get_sigmas_karras,
    get_sigmas_polyexponential,
    get_sigmas_uniform,
    get_sigmas_vp,
)
from res_torch.steppers import NonFiniteSampleError
from res_torch.tableau import Tableau, TableauError, available_tableaux, load_tableau

__all__ = [
    "METHODS",
    "Coefficients",
    "Method",
    "NoiseOptions",
    "PIDController",
    "StepCoefficients",
    "coefficients",
    "method_of",
    "sample_deis",
    "sample_ipndm",
    "sample_ipndm_v",
    "sample_method",
    "DiscreteEpsDenoiser",
    "DiscreteSchedule",
    "DiscreteVDenoiser",
    "EDMDenoiser",
    "FlowDenoiser",
    "SAMPLERS",
    "NFEBudgetError",
    "NoiseError",
    "NonFiniteSampleError",
    "ResError",
    "ScheduleError",
    "SigmasError",
    "StepSizeError",
    "StepGrid",
    "Tableau",
    "TableauError",
    "UnknownMethodError",
    "ancestral_step",
    "available_tableaux",
    "churn_gamma",
    "default_noise_sampler",
    "evaluations_per_step",
    "get_sigmas_exponential",
    "get_sigmas_karras",
    "get_sigmas_polyexponential",
    "get_sigmas_uniform",
    "get_sigmas_vp",
    "load_tableau",
    "make_grid",
    "nfe",
    "phi",
    "sample",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_dpmpp_2s",
    "sample_dpmpp_3m",
    "sample_erk",
    "sample_euler",
    "sample_heun",
    "sample_res_2m",
    "sample_res_2s",
    "sample_res_3m",
    "sample_res_3s",
    "sample_res_adaptive",
    "sigmas_for_nfe",
]
