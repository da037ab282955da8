"""Symbolic exponential Runge–Kutta / exponential multistep tableaux as data.

For ``u' = L u + g(u, t)`` and ``Z = hL`` an s-stage explicit exponential RK method is
(Hochbruck & Ostermann, Acta Numerica 19 (2010), eq. (2.19))::

    U_i     = e^{c_i Z} u_n + h Σ_{j<i} a_ij(Z) g(U_j, t_n + c_j h)
    u_{n+1} = e^{Z} u_n     + h Σ_i    b_i(Z)  g(U_i, t_n + c_i h)

Every entry ``a_ij``, ``b_i`` is a SymPy expression in :data:`Z` that is a linear combination of
``phi(k, scale * Z)`` with coefficients depending only on the free parameters (e.g. ``c2``).

Exponential *multistep* methods use the same form (``kind="multistep"``): stage 1 is ``g`` at the
current point, stage ``j ≥ 2`` is the stored ``g`` of the ``(j-1)``-th previous step with node
``c_j = (t_{n-j+1} - t_n)/h ≤ 0`` (a parameter with ``role="history_node"``), and ``A = 0``.
In the local-error analysis these stages are exact, so only the conditions ``psi_q = 0`` remain.

Methods answer questions nodepy-style: :meth:`ExpTableau.stiff_order`, :meth:`~ExpTableau.order`
(alias), :meth:`~ExpTableau.scalar_order`, :meth:`~ExpTableau.classical_order`,
:meth:`~ExpTableau.error_coefficient`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING

import sympy as sp

from res_theory.phi import phi

if TYPE_CHECKING:
    from res_theory.check import OrderReport

__all__ = ["C2_MIN", "Z", "Parameter", "ExpTableau", "TableauError", "exact_value", "phi_terms"]

Z = sp.Symbol("Z")
"""The symbol ``Z = hL`` of every tableau entry (diffusion sampling: ``Z = -h``)."""

C2_MIN = sp.Rational(1, 64)
"""Lower bound (inclusive) of a free second node ``c2`` (res_2s, dpmpp_2s, res_3s). Stage
weights scale like ``1/c2`` (RES-2S: ``b_2 = phi_2/c2``, ``b_1 = phi_1 - phi_2/c2``): an error
``delta`` in the stage values reaches the step result multiplied by up to ``2/c2 - 1`` (dpmpp_2s:
``1/c2 - 1``), so the relative rounding error grows like ``eps/c2`` (c2 = 1e-9 in float32: 86 %
off; float16 NaN from 1e-5). ``c2 >= 1/64`` caps the factor at 127: ``8e-6`` in float32,
6 % in float16 (measured at c2 = 1/64, 10 Karras steps, exact Gaussian denoiser, largest
deviation from float64: 9e-6 and 5 %; bfloat16 is not protected: 17 %, 0.8 % at c2 = 1/2).
The same bound as ``res_torch.coefficients.NODE_SPACING_MIN``, the smallest
history node spacing a multistep step differences over."""


class TableauError(ValueError):
    """A tableau is malformed (shapes, triangularity, nodes) or asked for invalid parameters."""


def exact_value(value: object, what: str = "value") -> sp.Expr:
    """``value`` as an exact SymPy expression, without evaluating text as Python: a string is
    read by the tableau files' expression grammar (``"1/3"``, ``"sqrt(2)/2"``;
    :func:`res_theory.load.parse_expression`), a float becomes the rational it rounds to, and
    anything else must be a SymPy-convertible number (``sympify(strict=True)``)."""
    if isinstance(value, str):
        from res_theory.load import parse_expression  # load builds tableaux: imported here

        try:
            v = parse_expression(value, frozenset())
        except TableauError as exc:
            raise TableauError(f"{what} must be a number like 1/2: {exc}") from None
    else:
        try:
            v = (
                sp.nsimplify(value, rational=True)
                if isinstance(value, float)
                else sp.sympify(value, strict=True)
            )
        except (sp.SympifyError, TypeError, ValueError) as exc:
            raise TableauError(f"{what}: not a number: {value!r:.60}") from exc
    if v.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise TableauError(f"{what} must be finite, got {value!r:.60}")
    return v


@dataclass(frozen=True)
class Parameter:
    """A free parameter of a tableau family with its admissible interval and default."""

    name: str
    default: sp.Expr
    lower: sp.Expr | None = None
    upper: sp.Expr | None = None
    lower_inclusive: bool = False
    upper_inclusive: bool = False
    description: str = ""
    role: str = "free"

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise TableauError(f"parameter name must be an identifier, got {self.name!r}")
        for key in ("default", "lower", "upper"):
            value = getattr(self, key)
            if value is not None:  # exact as given: nsimplify would round 0.333..3 to 1/3
                object.__setattr__(self, key, exact_value(value, f"parameter {self.name} {key}"))
        if self.role not in ("free", "history_node"):
            raise TableauError(
                f"parameter role must be 'free' or 'history_node', got {self.role!r}"
            )
        self.validate(self.default)

    @property
    def symbol(self) -> sp.Symbol:
        return sp.Symbol(self.name)

    def validate(self, value: sp.Expr | float) -> sp.Expr:
        """Return ``value`` (as an exact SymPy number) or raise if it leaves the interval."""
        v = exact_value(value, f"parameter {self.name}")
        if not v.is_real or not v.is_finite:
            raise TableauError(f"parameter {self.name} must be a finite real number, got {value!r}")
        if self.lower is not None and (
            v < self.lower or (v == self.lower and not self.lower_inclusive)
        ):
            raise TableauError(f"parameter {self.name}={value} is outside {self.interval()}")
        if self.upper is not None and (
            v > self.upper or (v == self.upper and not self.upper_inclusive)
        ):
            raise TableauError(f"parameter {self.name}={value} is outside {self.interval()}")
        return v

    def interval(self) -> str:
        lo = "-inf" if self.lower is None else str(self.lower)
        hi = "inf" if self.upper is None else str(self.upper)
        left = "[" if self.lower_inclusive and self.lower is not None else "("
        right = "]" if self.upper_inclusive and self.upper is not None else ")"
        return f"{left}{lo}, {hi}{right}"

    def sample(self, rng: random.Random) -> sp.Rational:
        """A random exact rational strictly inside the interval (unbounded sides: width 4)."""
        lo = (
            self.lower
            if self.lower is not None
            else (self.upper if self.upper is not None else 0) - 4
        )
        hi = self.upper if self.upper is not None else lo + 4
        u = sp.Rational(Fraction(rng.uniform(0.05, 0.95)).limit_denominator(997))
        value = lo + (hi - lo) * u
        return value if value.is_Rational else sp.nsimplify(value, rational=True)


def phi_terms(entry: sp.Expr) -> list[tuple[sp.Expr, int, sp.Expr]]:
    """Split ``entry`` into ``[(coefficient, k, scale), ...]``, ``entry = Σ coeff phi_k(scale Z)``.

    ``exp(s Z)`` counts as ``phi_0(s Z)``. Raises :class:`TableauError` if ``entry`` is not such a
    linear combination (e.g. a product of phi functions, or a bare power of ``Z``).
    """
    expr = sp.expand(sp.sympify(entry))
    if expr == 0:
        return []
    atoms = sorted((a for a in expr.atoms(phi, sp.exp) if a.has(Z)), key=sp.default_sort_key)
    try:
        poly = sp.Poly(expr, *atoms) if atoms else None
    except sp.PolynomialError as exc:
        raise TableauError(f"entry {entry} is not a linear combination of phi_k(s Z)") from exc
    if poly is None or poly.total_degree() != 1 or poly.coeff_monomial(1) != 0:
        raise TableauError(f"entry {entry} is not a linear combination of phi_k(s Z)")
    out = []
    for atom in atoms:
        coeff = sp.factor(poly.coeff_monomial(atom))
        if coeff.has(Z):
            raise TableauError(f"entry {entry}: coefficient {coeff} of {atom} depends on Z")
        if coeff == 0:
            continue
        k, arg = (
            (0, atom.args[0]) if isinstance(atom, sp.exp) else (int(atom.args[0]), atom.args[1])
        )
        scale = sp.factor(arg / Z)
        if scale.has(Z):
            raise TableauError(f"entry {entry}: argument {arg} is not a multiple of Z")
        out.append((coeff, k, scale))
    return out


@dataclass(frozen=True)
class ExpTableau:
    """A symbolic exponential RK (``kind="singlestep"``) or multistep (``"multistep"``) method.

    ``A`` is the full ``s × s`` strictly lower triangular matrix of entries in :data:`Z`.
    ``b_embedded`` (optional) are the weights ``b̂_i(Z)`` of an embedded method of lower order
    on the same stages: ``h Σ_i (b_i - b̂_i) g_i`` estimates the local error (``docs/theory.md``,
    "Embedded pairs"; :mod:`res_theory.embedded` derives them).
    """

    name: str
    title: str
    c: tuple[sp.Expr, ...]
    A: tuple[tuple[sp.Expr, ...], ...]
    b: tuple[sp.Expr, ...]
    parameters: tuple[Parameter, ...] = ()
    kind: str = "singlestep"
    startup: tuple[str, ...] = ()
    source: str = ""
    derivation: str = ""
    b_embedded: tuple[sp.Expr, ...] | None = None
    # not an init field: dataclasses.replace builds a new, empty one (a changed tableau's report
    # must not be the old one's)
    _report_cache: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", tuple(sp.sympify(x) for x in self.c))
        object.__setattr__(self, "b", tuple(sp.sympify(x) for x in self.b))
        object.__setattr__(self, "A", tuple(tuple(sp.sympify(x) for x in row) for row in self.A))
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "startup", tuple(self.startup))
        if self.b_embedded is not None:
            object.__setattr__(self, "b_embedded", tuple(sp.sympify(x) for x in self.b_embedded))
        s = len(self.c)
        if s < 1:
            raise TableauError(f"{self.name}: a tableau needs at least one stage")
        if len(self.b) != s or len(self.A) != s or any(len(row) != s for row in self.A):
            raise TableauError(
                f"{self.name}: mismatched lengths: c has {s} entries, b {len(self.b)}, "
                f"A rows {[len(row) for row in self.A]} (need an {s}x{s} matrix)"
            )
        for i, row in enumerate(self.A):
            for j in range(i, s):
                if row[j] != 0:
                    raise TableauError(
                        f"{self.name}: A must be strictly lower triangular, A[{i}][{j}] = {row[j]}"
                    )
        if self.c[0] != 0:
            raise TableauError(f"{self.name}: c[0] must be 0, got {self.c[0]}")
        if self.kind not in ("singlestep", "multistep"):
            raise TableauError(f"{self.name}: kind must be 'singlestep' or 'multistep'")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise TableauError(f"{self.name}: duplicate parameter names {names}")
        if self.b_embedded is not None:
            if len(self.b_embedded) != s:
                raise TableauError(
                    f"{self.name}: b_embedded has {len(self.b_embedded)} entries, need {s}"
                )
            if self.b_embedded == self.b:
                raise TableauError(f"{self.name}: b_embedded equals b (the estimate would be 0)")
        allowed = {Z, *(p.symbol for p in self.parameters)}
        embedded = self.b_embedded or ()
        for entry in (*self.c, *self.b, *embedded, *(x for row in self.A for x in row)):
            extra = entry.free_symbols - allowed
            if extra:
                raise TableauError(f"{self.name}: entry {entry} uses unknown symbols {extra}")
            if entry not in self.c:
                phi_terms(entry)
        if any(ci.has(Z) for ci in self.c):
            raise TableauError(f"{self.name}: nodes must not depend on Z")
        history = [p.symbol for p in self.parameters if p.role == "history_node"]
        if self.kind == "multistep":
            for i, ci in enumerate(self.c[1:], start=2):
                if ci not in history and not (ci.is_number and ci < 0):
                    raise TableauError(
                        f"{self.name}: multistep node c{i} = {ci} must be a history parameter "
                        "or a negative number"
                    )
            if any(x != 0 for row in self.A for x in row):
                raise TableauError(f"{self.name}: a multistep method must have A = 0")
            if len(self.startup) != s - 1:
                raise TableauError(f"{self.name}: needs {s - 1} startup methods")
        else:
            if history or self.startup:
                raise TableauError(f"{self.name}: history nodes/startup only for multistep methods")
            self._check_nodes(self.default_values())

    # -- parameters ---------------------------------------------------------------------------
    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        return tuple(p.symbol for p in self.parameters)

    def default_values(self) -> dict[sp.Symbol, sp.Expr]:
        return {p.symbol: p.default for p in self.parameters}

    def parameter_values(
        self, values: Mapping[str, object] | None = None
    ) -> dict[sp.Symbol, sp.Expr]:
        """Defaults replaced by ``values`` (by name), validated against the intervals."""
        known = {p.name: p for p in self.parameters}
        values = dict(values or {})
        unknown = set(values) - known.keys()
        if unknown:
            raise TableauError(
                f"{self.name} has no parameter(s) {sorted(unknown)}; "
                f"it has {sorted(known) or 'none'}"
            )
        out = self.default_values()
        for name, value in values.items():
            out[known[name].symbol] = known[name].validate(value)
        if self.kind == "singlestep":
            self._check_nodes(out)
        return out

    def _check_nodes(self, values: Mapping[sp.Symbol, sp.Expr]) -> None:
        for i, ci in enumerate(self.c[1:], start=2):
            v = ci.subs(values)
            if v.is_number and not v > 0:
                raise TableauError(
                    f"{self.name}: node c{i} = {v} must be > 0 for a single-step method"
                )

    def at(self, **values: object) -> ExpTableau:
        """The member of the family with the given parameter values (other parameters stay free)."""
        params = self.parameter_values(values)
        subs = {p.symbol: params[p.symbol] for p in self.parameters if p.name in values}

        def sub(x: sp.Expr) -> sp.Expr:
            value = sp.expand(x.subs(subs)) if subs else x
            if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
                shown = ", ".join(f"{k}={v}" for k, v in values.items())
                raise TableauError(f"{self.name} is undefined at {shown:.80} (division by zero)")
            return value

        return replace(
            self,
            c=tuple(sub(x) for x in self.c),
            A=tuple(tuple(sub(x) for x in row) for row in self.A),
            b=tuple(sub(x) for x in self.b),
            b_embedded=None if self.b_embedded is None else tuple(sub(x) for x in self.b_embedded),
            parameters=tuple(p for p in self.parameters if p.name not in values),
        )

    # -- the h -> 0 limit ------------------------------------------------------------------------
    def embedded(self) -> ExpTableau:
        """The embedded method: this tableau with ``b_embedded`` as its weights."""
        if self.b_embedded is None:
            raise TableauError(f"{self.name} has no embedded weights (b_embedded is None)")
        return replace(
            self,
            name=f"{self.name}_embedded",
            title=f"{self.title}, embedded weights",
            b=self.b_embedded,
            b_embedded=None,
        )

    def classical(
        self,
    ) -> tuple[tuple[sp.Expr, ...], tuple[tuple[sp.Expr, ...], ...], tuple[sp.Expr, ...]]:
        """The ``h → 0`` (``Z → 0``) limit ``(c, A(0), b(0))``: an ordinary Butcher tableau."""
        lim = lambda x: sp.nsimplify(sp.simplify(x.subs(Z, 0)))  # noqa: E731
        return (
            self.c,
            tuple(tuple(lim(x) for x in row) for row in self.A),
            tuple(lim(x) for x in self.b),
        )

    # -- questions -------------------------------------------------------------------------------
    def report(self, max_order: int = 4) -> OrderReport:
        """:func:`res_theory.check.check` up to ``max_order`` (cached per ``max_order``). The
        questions below answer within that bound: a method of higher order reports
        ``max_order`` and has no error coefficient there (``luan_ostermann5`` needs
        ``max_order=5``)."""
        from res_theory.check import check

        key = max_order
        if key not in self._report_cache:
            self._report_cache[key] = check(self, order=max_order)
        return self._report_cache[key]

    def stiff_order(self, max_order: int = 4) -> int:
        """Stiff order (operator case, Hochbruck–Ostermann conditions, uniform in ``Z``), at
        most ``max_order``."""
        return self.report(max_order).stiff_order

    order = stiff_order

    def scalar_order(self, max_order: int = 4) -> int:
        """Order when ``L`` is a scalar (diffusion ``L = -1``): conditions as identities in h."""
        return self.report(max_order).scalar_order

    def classical_order(self, max_order: int = 4) -> int:
        """Order for bounded ``L`` as ``h → 0`` (Taylor expansion of the stiff conditions)."""
        return self.report(max_order).classical_order

    def error_coefficient(self, max_order: int = 4) -> sp.Expr | None:
        """Leading Taylor term of the first condition that does not hold identically; ``None``
        when every condition up to ``max_order`` holds (ask again with a larger one)."""
        return self.report(max_order).error_coefficient()
