"""phi_k in torch against 40-digit mpmath values, over |z| in [1e-12, 1e3], both signs."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from res_torch.phi import phi

mpmath.mp.dps = 40
# the bounds stated in res_torch/phi.py's docstring (the worst of a 40000-point scan, whose
# worst points are added here); k = 0 is torch.exp, whose float64 error depends on the CPU's
# vector instructions (0.51 and 0.63 ulp measured)
ULP_BOUND_FLOAT64 = {0: 1.0, 1: 3.5, 2: 5, 3: 6, 4: 6, 5: 5, 6: 7}
MAGNITUDES = np.concatenate([np.logspace(-12, 3, 300), np.linspace(0.01, 40, 800)])
WORST = [-4.313547918263943, -7.8685874195806536, -7.894087702923431, -9.58760652021734,
         -13.568650755025168, -12.044633821127372, -7.9533, -7.6733, -11.956]  # fmt: skip
ARGUMENTS = np.concatenate([MAGNITUDES, -MAGNITUDES, WORST, [0.0]])


def reference(k: int, z: float) -> mpmath.mpf:
    """``phi_k(z) = 1F1(1; k+1; z)/k!``."""
    return mpmath.hyp1f1(1, k + 1, z) / mpmath.factorial(k)


def max_ulp_error(k: int, dtype: torch.dtype) -> float:
    z = torch.tensor(ARGUMENTS, dtype=dtype)
    values = phi(k, z)
    assert values.dtype == dtype
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    worst = 0.0
    for zi, value in zip(z.double().tolist(), values.double().tolist(), strict=True):
        exact = reference(k, zi)
        if abs(exact) > np.finfo(np_dtype).max:
            assert value == math.inf  # overflow where phi_k is not representable
            continue
        ulp = float(np.spacing(np_dtype(abs(float(exact)))))
        worst = max(worst, float(abs(mpmath.mpf(value) - exact) / ulp))
    return worst


@pytest.mark.parametrize("k", range(7))
def test_phi_float64_within_documented_ulps(k):
    assert max_ulp_error(k, torch.float64) <= ULP_BOUND_FLOAT64[k]


@pytest.mark.parametrize("k", range(7))
def test_phi_float32_is_correctly_rounded(k):
    # computed in float64 and rounded once: within half an ulp plus the float64 error
    assert max_ulp_error(k, torch.float32) <= 0.5 + 1e-6


def test_phi_small_arguments_have_no_cancellation():
    # the expm1-recurrence loses everything here; the exact value is 1/k! + z/(k+1)! + ...
    z = torch.tensor([1e-8, -1e-8], dtype=torch.float32)
    for k in range(1, 6):
        expected = torch.tensor(
            [1 / math.factorial(k) + float(zi) / math.factorial(k + 1) for zi in z.tolist()]
        )
        assert torch.allclose(phi(k, z), expected.float(), rtol=1e-7, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_phi_half_precision_is_correctly_rounded(dtype):
    z = torch.tensor([-60000.0, -1e3, -1.0, -1e-4, 0.0, 1e-4, 1.0, 10.0], dtype=dtype)
    for k in range(6):
        values = phi(k, z)
        assert values.dtype == dtype
        assert torch.isfinite(values).all()
        exact = [float(reference(k, float(zi))) for zi in z.double().tolist()]
        assert torch.equal(values, torch.tensor(exact, dtype=torch.float64).to(dtype))


@pytest.mark.parametrize("k", range(6))
def test_phi_gradient_is_finite_and_correct(k):
    # d/dz phi_k(z) = phi_{k+1}(z) + (... ) ; at z = 0 it is 1/(k+1)!
    z = torch.tensor([-700.0, -30.0, -3.0, -1e-9, 0.0, 1e-9, 3.0, 30.0], dtype=torch.float64)
    z.requires_grad_(True)
    phi(k, z).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[4].item() == pytest.approx(1 / math.factorial(k + 1), rel=1e-14)
    expected = [float(mpmath.diff(lambda t: reference(k, t), float(zi))) for zi in z.tolist()]
    assert torch.allclose(z.grad, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


def test_phi_gradcheck():
    z = torch.tensor([-50.0, -5.0, -0.5, 0.0, 0.5, 5.0], dtype=torch.float64, requires_grad=True)
    for k in range(4):
        assert torch.autograd.gradcheck(lambda t, k=k: phi(k, t), (z,))


def test_phi_accepts_python_numbers_and_rejects_bad_k():
    assert phi(1, 0.0).dtype == torch.float64
    assert phi(0, 1.0).item() == pytest.approx(math.e)
    with pytest.raises(ValueError, match="k >= 0"):
        phi(-1, torch.zeros(1))
    with pytest.raises(ValueError, match="integer"):
        phi(1.5, torch.zeros(1))
