"""Named exponential integrators, each with its source: literature tableaux and derived families.

Notation: ``phi(k, s*Z)`` is the standard ``phi_k(s Z)``; ``phi_{k,i} = phi_k(c_i Z)``.
The file stems (``ddim``, ``res_2s``, ...) are fixed: ``res_torch`` code refers to them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import sympy as sp

from res_theory.derive import derive_multistep, res_3s_family
from res_theory.phi import phi
from res_theory.tableau import C2_MIN, ExpTableau, Parameter, TableauError, Z

__all__ = ["get", "names", "LIBRARY"]

R = sp.Rational
c2, c3 = sp.symbols("c2 c3")
p1, p2, p3 = (phi(k, Z) for k in (1, 2, 3))
h1, h2, h3 = (phi(k, Z / 2) for k in (1, 2, 3))
EXPONENTIAL_EULER = (p1, 0)
"""Embedded weights (``b_embedded``) of res_2s and res_2m: exponential Euler (DDIM) on stage 1,
as :func:`res_theory.embedded.embedded_pair` selects; res_3s and res_3m embed RES-2S/RES-2M on
stages 1, 2 (``docs/theory.md``, "Embedded pairs")."""
HO2005 = "Hochbruck & Ostermann, SIAM J. Numer. Anal. 43 (2005) 1069-1090"
ZSC = "Zhang, Song & Chen, arXiv 2308.02157 (2023)"


def _c2_param(description: str) -> Parameter:
    return Parameter("c2", R(1, 2), C2_MIN, 1, True, True, description)


def _history(name: str, default: int) -> Parameter:
    return Parameter(
        name,
        default,
        None,
        0,
        False,
        False,
        f"history node (t_(n-{-default}) - t_n)/h of the {-default}-th previous step",
        role="history_node",
    )


def ddim() -> ExpTableau:
    return ExpTableau(
        "ddim",
        "DDIM = exponential Euler",
        (0,),
        ((0,),),
        (p1,),
        source=f"{HO2005}, eq. (2.x) exponential Euler; Song et al. (DDIM) 2021; {ZSC} sect. 4",
        derivation="literature; also derive(stages=1, order=1)",
    )


def res_2s() -> ExpTableau:
    return ExpTableau(
        "res_2s",
        "RES single-step, 2 stages",
        (0, c2),
        ((0, 0), (c2 * phi(1, c2 * Z), 0)),
        (p1 - p2 / c2, p2 / c2),
        parameters=(_c2_param("second node c2"),),
        source=f"{ZSC}, single-step RES (MATH.md sect. 4); {HO2005}, eq. (5.3)",
        derivation="derive(stages=2, order=2): unique solution of psi_1 = psi_2 = psi_{1,2} = 0",
        b_embedded=EXPONENTIAL_EULER,
    )


def dpmpp_2s() -> ExpTableau:
    return ExpTableau(
        "dpmpp_2s",
        "DPM-Solver++(2S)",
        (0, c2),
        ((0, 0), (c2 * phi(1, c2 * Z), 0)),
        (p1 - p1 / (2 * c2), p1 / (2 * c2)),
        parameters=(_c2_param("second node c2 (r1 in DPM-Solver++)"),),
        source="Lu et al., DPM-Solver++ (arXiv 2211.01095), Alg. 1 (2S), data prediction",
        derivation="literature: b_2 = phi_1/(2 c2)",
    )


def etd2rk() -> ExpTableau:
    return ExpTableau(
        "etd2rk",
        "ETD2RK (Cox & Matthews)",
        (0, 1),
        ((0, 0), (p1, 0)),
        (p1 - p2, p2),
        source="Cox & Matthews, J. Comput. Phys. 176 (2002) 430-455, eq. (22); = res_2s at c2 = 1",
        derivation="literature",
    )


_B4 = (p1 - 3 * p2 + 4 * p3, 2 * p2 - 4 * p3, 2 * p2 - 4 * p3, -p2 + 4 * p3)
_B4_SW = (p1 - 3 * p2 + 4 * p3, 0, 4 * p2 - 8 * p3, -p2 + 4 * p3)
_C4 = (0, R(1, 2), R(1, 2), 1)


def cox_matthews_etd3rk() -> ExpTableau:
    return ExpTableau(
        "cox_matthews_etd3rk",
        "ETD3RK (Cox & Matthews)",
        (0, R(1, 2), 1),
        ((0, 0, 0), (h1 / 2, 0, 0), (-p1, 2 * p1, 0)),
        (p1 - 3 * p2 + 4 * p3, 4 * p2 - 8 * p3, -p2 + 4 * p3),
        source="Cox & Matthews, J. Comput. Phys. 176 (2002), eqs. (23)-(25)",
        derivation="literature",
    )


def cox_matthews_etdrk4() -> ExpTableau:
    return ExpTableau(
        "cox_matthews_etdrk4",
        "ETDRK4 (Cox & Matthews)",
        _C4,
        ((0, 0, 0, 0), (h1 / 2, 0, 0, 0), (0, h1 / 2, 0, 0), (p1 - h1, 0, h1, 0)),
        _B4,
        source="Cox & Matthews (2002), eq. (26)-(29); a_41 = phi_1(Z/2)(e^{Z/2}-1)/2 "
        "rewritten as phi_1(Z) - phi_1(Z/2)",
        derivation="literature",
    )


def krogstad() -> ExpTableau:
    return ExpTableau(
        "krogstad",
        "Krogstad's ETDRK4",
        _C4,
        ((0, 0, 0, 0), (h1 / 2, 0, 0, 0), (h1 / 2 - h2, h2, 0, 0), (p1 - 2 * p2, 0, 2 * p2, 0)),
        _B4,
        source="Krogstad, J. Comput. Phys. 203 (2005) 72-88; " + HO2005 + ", sect. 5.2",
        derivation="literature",
    )


def strehmel_weiner() -> ExpTableau:
    return ExpTableau(
        "strehmel_weiner",
        "Strehmel-Weiner",
        _C4,
        (
            (0, 0, 0, 0),
            (h1 / 2, 0, 0, 0),
            (h1 / 2 - h2 / 2, h2 / 2, 0, 0),
            (p1 - 2 * p2, -2 * p2, 4 * p2, 0),
        ),
        _B4_SW,
        source="Strehmel & Weiner, Linear-implizite Runge-Kutta-Methoden (1992); " + HO2005,
        derivation="literature",
    )


def friedli() -> ExpTableau:
    return ExpTableau(
        "friedli",
        "Friedli",
        _C4,
        (
            (0, 0, 0, 0),
            (h1 / 2, 0, 0, 0),
            (h1 / 2 - h2 / 2, h2 / 2, 0, 0),
            (p1 - 2 * p2, -R(26, 25) * p1 + R(2, 25) * p2, R(26, 25) * p1 + R(48, 25) * p2, 0),
        ),
        _B4_SW,
        source="Friedli, Lecture Notes in Math. 631 (1978); " + HO2005 + ", sect. 5.2",
        derivation="literature",
    )


def hochbruck_ostermann4() -> ExpTableau:
    a52 = h2 / 2 - p3 + p2 / 4 - phi(3, Z / 2) / 2
    a54 = h2 / 4 - a52
    return ExpTableau(
        "hochbruck_ostermann4",
        "Hochbruck-Ostermann 5-stage order 4",
        (0, R(1, 2), R(1, 2), 1, R(1, 2)),
        (
            (0,) * 5,
            (h1 / 2, 0, 0, 0, 0),
            (h1 / 2 - h2, h2, 0, 0, 0),
            (p1 - 2 * p2, p2, p2, 0, 0),
            (h1 / 2 - 2 * a52 - a54, a52, a52, a54, 0),
        ),
        (p1 - 3 * p2 + 4 * p3, 0, 0, -p2 + 4 * p3, 4 * p2 - 8 * p3),
        source=HO2005 + ", eq. (5.19)",
        derivation="literature",
    )


def luan_ostermann5() -> ExpTableau:
    """expRK5s8 of Luan & Ostermann (2014), as transcribed in Chebfun's ``spin`` (Montanelli).

    Paper: "Explicit exponential Runge–Kutta methods of high order for parabolic problems",
    J. Comput. Appl. Math. 256 (2014) 168–179.

    ``pt(k, i) = c_i^k phi_k(c_i Z)``; ``a_i1`` from the row sums, ``b_1 = phi_1 - Σ_{i≥2} b_i``.
    """
    c = (0, R(1, 2), R(1, 2), R(1, 4), R(1, 2), R(1, 5), R(2, 3), 1)

    def pt(k: int, i: int) -> sp.Expr:
        return c[i - 1] ** k * phi(k, c[i - 1] * Z)

    p4 = phi(4, Z)
    a = {}
    a[3, 2] = 2 * pt(2, 2)
    a[4, 3] = 2 * pt(2, 4)
    a[5, 3] = -2 * pt(2, 2) + 16 * pt(3, 2)
    a[5, 4] = 8 * pt(2, 2) - 32 * pt(3, 2)
    a[6, 4] = 8 * pt(2, 6) - 32 * pt(3, 6)
    a[7, 4] = -R(125, 162) * a[6, 4]
    a[6, 5] = -2 * pt(2, 6) + 16 * pt(3, 6)
    a[7, 5] = R(125, 1944) * a[6, 4] - R(4, 3) * pt(2, 7) + R(40, 3) * pt(3, 7)
    big = (
        R(5, 32) * a[6, 4]
        - R(25, 28) * pt(2, 6)
        + R(81, 175) * pt(2, 7)
        - R(162, 25) * pt(3, 7)
        + R(150, 7) * pt(4, 6)
        + R(972, 35) * pt(4, 7)
        + 6 * p4
    )
    a[8, 5] = -R(16, 3) * p2 + R(208, 3) * p3 - 40 * big
    a[7, 6] = R(3125, 3888) * a[6, 4] + R(25, 3) * pt(2, 7) - R(100, 3) * pt(3, 7)
    a[8, 6] = R(250, 21) * p2 - R(250, 3) * p3 + R(250, 7) * big
    a[8, 7] = R(27, 14) * p2 - 27 * p3 + R(135, 7) * big
    s = len(c)
    A = [[sp.Integer(0)] * s for _ in range(s)]
    for (i, j), value in a.items():
        A[i - 1][j - 1] = sp.expand(value)
    for i in range(1, s):
        A[i][0] = sp.expand(pt(1, i + 1) - sum(A[i][1:i], sp.Integer(0)))
    b = [sp.Integer(0)] * s
    b[5] = R(125, 14) * p2 - R(625, 14) * p3 + R(1125, 14) * p4
    b[6] = -R(27, 14) * p2 + R(162, 7) * p3 - R(405, 7) * p4
    b[7] = R(1, 2) * p2 - R(13, 2) * p3 + R(45, 2) * p4
    b[0] = sp.expand(p1 - sum(b[1:], sp.Integer(0)))
    return ExpTableau(
        "luan_ostermann5",
        "Luan-Ostermann expRK5s8",
        c,
        tuple(map(tuple, A)),
        tuple(b),
        source="Luan & Ostermann, J. Comput. Appl. Math. 256 (2014) 168-179 (expRK5s8); "
        "coefficients as in Chebfun spin (@expinteg/exprk5s8, H. Montanelli)",
        derivation="literature; a_i1 and b_1 from the row sums / psi_1 = 0",
    )


def res_2m() -> ExpTableau:
    return ExpTableau(
        "res_2m",
        "RES multistep, 2nd order",
        (0, c2),
        ((0, 0), (0, 0)),
        (p1 - p2 / c2, p2 / c2),
        parameters=(_history("c2", -1),),
        kind="multistep",
        startup=("ddim",),
        source=f"{ZSC}, multistep RES (MATH.md sect. 4), c2 = -h_prev/h",
        derivation="derive_multistep(2): psi_1 = psi_2 = 0 identically",
        b_embedded=EXPONENTIAL_EULER,
    )


def res_3m() -> ExpTableau:
    """Third-order RES multistep. Start-up: one ``res_2s`` step (second order at its default
    ``c2 = 1/2``, local error ``O(h^3)``), then one ``res_2m`` step, so the starting values do
    not limit the global order 3 (a first-order ``ddim`` first step would cap it at 2)."""
    b = derive_multistep((c2, c3))
    return ExpTableau(
        "res_3m",
        "RES multistep, 3rd order",
        (0, c2, c3),
        ((0,) * 3,) * 3,
        b,
        parameters=(_history("c2", -1), _history("c3", -2)),
        kind="multistep",
        startup=("res_2s", "res_2m"),
        source=f"this project (res_theory.derive.derive_multistep), in the spirit of {ZSC}",
        derivation="derive_multistep(3): psi_1 = psi_2 = psi_3 = 0 identically (linear solve)",
        b_embedded=(p1 - p2 / c2, p2 / c2, 0),
    )


def dpmpp_2m() -> ExpTableau:
    r = -c2
    return ExpTableau(
        "dpmpp_2m",
        "DPM-Solver++(2M)",
        (0, c2),
        ((0, 0), (0, 0)),
        (p1 * (1 + 1 / (2 * r)), -p1 / (2 * r)),
        parameters=(_history("c2", -1),),
        kind="multistep",
        startup=("ddim",),
        source="Lu et al., DPM-Solver++ (arXiv 2211.01095), Alg. 2; r = h_prev/h = -c2",
        derivation="literature",
    )


def dpmpp_3m() -> ExpTableau:
    """DPM-Solver++(3M) as in the dpm-solver / diffusers code.

    (``multistep_dpm_solver_third_order_update``, ``algorithm_type="dpmsolver++"``.)

    With ``r0 = h_0/h = -c2``, ``r1 = h_1/h = c2 - c3`` and ``m_0, m_1, m_2`` the denoised outputs::

        D1_0 = (m0 - m1)/r0,  D1_1 = (m1 - m2)/r1,  D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1),
        D2 = (D1_0 - D1_1)/(r0+r1),
        x' = e^{-h} x + h [phi_1 m0 + phi_2 D1 + phi_3 D2]     (phi_k = phi_k(-h))

    (the code's ``-(expm1(-h)/h**2 + 1/h - 1/2)`` factor of ``D2`` is ``h phi_3(-h)``).
    """
    m = sp.symbols("m0:3")
    r0, r1 = -c2, c2 - c3
    d10, d11 = (m[0] - m[1]) / r0, (m[1] - m[2]) / r1
    d1 = d10 + r0 / (r0 + r1) * (d10 - d11)
    d2 = (d10 - d11) / (r0 + r1)
    update = sp.expand(p1 * m[0] + p2 * d1 + p3 * d2)
    b = tuple(sp.collect(update.coeff(mi), [p1, p2, p3], sp.factor) for mi in m)
    return ExpTableau(
        "dpmpp_3m",
        "DPM-Solver++(3M)",
        (0, c2, c3),
        ((0,) * 3,) * 3,
        b,
        parameters=(_history("c2", -1), _history("c3", -2)),
        kind="multistep",
        startup=("ddim", "dpmpp_2m"),
        source="Lu et al., DPM-Solver++ (arXiv 2211.01095); dpm-solver / diffusers "
        "multistep_dpm_solver_third_order_update (dpmsolver++)",
        derivation="literature, transcribed exactly from the code",
    )


def res_3s() -> ExpTableau:
    return res_3s_family()


LIBRARY: dict[str, Callable[[], ExpTableau]] = {
    f.__name__: f
    for f in (
        ddim,
        res_2s,
        dpmpp_2s,
        res_3s,
        etd2rk,
        cox_matthews_etd3rk,
        cox_matthews_etdrk4,
        krogstad,
        strehmel_weiner,
        friedli,
        hochbruck_ostermann4,
        luan_ostermann5,
        res_2m,
        res_3m,
        dpmpp_2m,
        dpmpp_3m,
    )
}


def names() -> list[str]:
    return list(LIBRARY)


@functools.cache
def get(name: str) -> ExpTableau:
    """The named tableau; raises :class:`TableauError` for unknown names."""
    if name not in LIBRARY:
        raise TableauError(f"unknown tableau {name!r}; known: {', '.join(LIBRARY)}")
    return LIBRARY[name]()
