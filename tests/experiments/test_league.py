"""The league: testbeds, cached references, peers on exactly our sigmas, budgets, cell summary."""

import math

import pytest
import torch

from experiments.league.entrants import ENTRANTS, Entrant
from experiments.league.peers import (
    DIFFUSERS_PEERS,
    K_DIFFUSION_PEERS,
    PeerGridError,
    sample_diffusers,
    sample_k_diffusion,
)
from experiments.league.references import league_reference, reference_key
from experiments.league.run import (
    BudgetError,
    CountingDenoiser,
    LeagueConfig,
    cell_summary,
    league_grid,
    run_league,
    schedule_range,
)
from experiments.league.testbeds import (
    SmoothedKernelDenoiser,
    Testbed,
    TestbedError,
    get_testbed,
    scaled_testbed,
)
from experiments.problems.gaussian_mixture import GaussianMixture
from res_torch import get_sigmas_karras
from res_torch.nfe import SCHEDULES

F64 = torch.float64


def test_smoothed_kernel_denoiser_is_the_equal_weight_mixture_denoiser():
    data = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    kernel = SmoothedKernelDenoiser(data, 0.2)
    mixture = GaussianMixture(
        torch.ones(5, dtype=F64), data, 0.04 * torch.eye(3, dtype=F64).repeat(5, 1, 1)
    )
    x = 3 * torch.randn(7, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    sigma = torch.linspace(0.01, 5, 7, dtype=F64)
    assert torch.allclose(kernel(x, sigma), mixture.denoiser(x, sigma), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [0.25, 4.0, 10.0])
def test_a_scaled_testbed_is_the_denoiser_of_the_scaled_data(scale):
    """Data ``k y`` of the mixture ``N(m_i, s^2 I)``: the mixture ``N(k m_i, k^2 s^2 I)``."""
    data = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    base = Testbed("five", "exact", (3,), SmoothedKernelDenoiser(data, 0.2), 4, 2, 1e-10, "")
    wide = scaled_testbed(base, scale)
    covariance = (0.2 * scale) ** 2 * torch.eye(3, dtype=F64).repeat(5, 1, 1)
    mixture = GaussianMixture(torch.ones(5, dtype=F64), scale * data, covariance)
    x = 3 * scale * torch.randn(7, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    sigma = torch.linspace(0.01, 5, 7, dtype=F64) * scale
    assert wide.name == f"five_x{scale:g}" and wide.shape == base.shape
    assert torch.allclose(
        wide.denoiser(x, sigma), mixture.denoiser(x, sigma), rtol=1e-12, atol=1e-12
    )
    assert scaled_testbed(base, 1.0) is base
    for bad in (0.0, -2.0, math.inf, math.nan):
        with pytest.raises(TestbedError, match="data scale"):
            scaled_testbed(base, bad)


def test_kernel_denoiser_rejects_bad_input():
    with pytest.raises(TestbedError, match="smoothing"):
        SmoothedKernelDenoiser(torch.zeros(3, 2), 0.0)
    with pytest.raises(TestbedError, match="sample shape"):
        SmoothedKernelDenoiser(torch.zeros(3, 2), 0.1)(torch.zeros(1, 3), torch.ones(1))
    with pytest.raises(TestbedError, match="unknown testbed"):
        get_testbed("nope")


@pytest.mark.parametrize(
    "name", ["gmm", "gmm_sharp", "gmm_aniso", "kernel_digits", "kernel_patches"]
)
def test_exact_testbeds_are_float64_posterior_means(name):
    testbed = get_testbed(name)
    x = torch.randn(2, *testbed.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = testbed.denoiser(x, torch.full((2,), 1e-9, dtype=F64))
    assert out.dtype == F64 and out.shape == x.shape
    # D(x, sigma -> 0) -> x for a smoothed density (no collapse onto data points)
    assert torch.allclose(out, x, atol=1e-6)


def test_reference_is_cached_by_configuration(tmp_path):
    testbed = get_testbed("gmm")
    first = league_reference(testbed, batch=2, rtol=1e-6, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("league-ref-*.pt"))) == 1
    again = league_reference(testbed, batch=2, rtol=1e-6, cache_dir=tmp_path)
    assert torch.equal(first.x, again.x) and torch.equal(first.noise, again.noise)
    assert reference_key(testbed, 2, 0, 1e-6, 1e-3) != reference_key(testbed, 3, 0, 1e-6, 1e-3)
    vp_key = reference_key(testbed, 2, 0, 1e-6, 1e-3, *schedule_range("vp"))
    assert vp_key != reference_key(testbed, 2, 0, 1e-6, 1e-3)


def test_a_reference_key_follows_the_code(monkeypatch):
    """Editing a denoiser, a problem, the solver or a checkpoint changes the code fingerprint,
    and with it every reference key (the old key hashed testbeds.py only, so an edited mixture
    reused stale references)."""
    from experiments.league import references

    testbed = get_testbed("gmm")
    before = reference_key(testbed, 2, 0, 1e-6, 1e-3)
    monkeypatch.setattr(references, "code_fingerprint", lambda: "edited")
    assert reference_key(testbed, 2, 0, 1e-6, 1e-3) != before


@pytest.mark.parametrize("schedule", ["vp", "discrete"])
def test_a_league_on_a_grid_with_its_own_range_runs_over_that_range(schedule, tmp_path):
    """The VP and discrete grids have no sigma_min/sigma_max: their league grid and reference
    span their own ends, and the samplers start from x = sigma_max * noise there."""
    grid = SCHEDULES[schedule]
    sigma_max, sigma_min = schedule_range(schedule)
    ends = grid(5)
    assert (sigma_max, sigma_min) == (float(ends[0]), float(ends[-2]))
    sigmas, spent = league_grid("res_2m", 6, schedule=schedule)
    assert spent == 6 and torch.equal(sigmas, grid(6))
    testbed = get_testbed("gmm")
    reference = league_reference(testbed, batch=2, sigma_max=sigma_max, sigma_min=sigma_min)
    rows = run_league(
        LeagueConfig((("gmm", 2),), ("res_2m",), (6,), schedule=schedule), torch.device("cpu"),
        tmp_path,
    )  # fmt: skip
    sample = ENTRANTS["res_2m"].run(testbed.denoiser, reference.noise * sigma_max, sigmas)
    defect = float((sample - reference.x).flatten(1).norm(dim=1).mean())
    assert rows[0]["defect"] == pytest.approx(defect, rel=1e-12)
    assert reference.x.shape == (2, *testbed.shape)
    assert not torch.equal(reference.x, league_reference(testbed, batch=2).x)


class RecordingDenoiser:
    def __init__(self):
        self.sigmas = []

    def __call__(self, x, sigma):
        self.sigmas.append(float(sigma[0]))
        return 0.5 * x / (1 + sigma.reshape(-1, *[1] * (x.ndim - 1)) ** 2) + 0.1


@pytest.mark.parametrize("name", sorted(DIFFUSERS_PEERS))
def test_diffusers_peers_evaluate_exactly_our_levels(name):
    sigmas = get_sigmas_karras(8)
    model = RecordingDenoiser()
    out = sample_diffusers(name, model, torch.ones(2, 3, dtype=F64) * 80, sigmas)
    assert model.sigmas == [float(s) for s in sigmas[:-1]]
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["unipc_bh2_2", "unipc_bh2_3", "dpmsolver_2m", "dpmsolver_3m"])
def test_diffusers_own_final_step_is_the_data_prediction(name):
    sigmas, x = get_sigmas_karras(6), torch.ones(2, 3, dtype=F64) * 80
    ours = sample_diffusers(name, RecordingDenoiser(), x, sigmas)
    theirs = sample_diffusers(name, RecordingDenoiser(), x, sigmas, keep_last=True)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", sorted(K_DIFFUSION_PEERS))
def test_k_diffusion_peers_step_from_our_levels(name):
    entrant = ENTRANTS[name]
    sigmas, spent = league_grid(entrant.grid_method, 9)
    model = CountingDenoiser(RecordingDenoiser())
    sample_k_diffusion(name, model, torch.ones(2, 3, dtype=F64) * 80, sigmas)
    assert model.calls == spent
    # every step starts on a grid level (sample_k_diffusion asserts it through the callback);
    # 2-stage samplers evaluate their second stage between levels or at the next level
    assert {float(s) for s in sigmas[:-1]} <= set(model.denoiser.sigmas)
    assert model.denoiser.sigmas[0] == float(sigmas[0])


def test_peer_rejects_a_grid_without_final_zero():
    with pytest.raises(PeerGridError, match="ending in 0"):
        sample_diffusers("deis_2", RecordingDenoiser(), torch.ones(1, 2), torch.tensor([2.0, 1.0]))


def test_league_rows_spend_the_budget_and_summary_picks_minima(tmp_path):
    config = LeagueConfig((("gmm", 2),), tuple(ENTRANTS), (5, 6))
    rows = run_league(config, torch.device("cpu"), cache_dir=tmp_path)
    assert len(rows) == 2 * len(ENTRANTS)
    for row in rows:
        assert row["nfe_spent"] <= row["nfe"]
        if ENTRANTS[row["entrant"]].grid_method in ("res_2m",):
            assert row["nfe_spent"] == row["nfe"]
    for cell in cell_summary(rows):
        mine = [r["defect"] for r in rows if r["nfe"] == cell["nfe"] and r["family"] == "res"]
        assert cell["best_res_defect"] == min(mine)
        assert math.isclose(cell["ratio"], cell["best_res_defect"] / cell["best_peer_defect"])


def test_the_league_command_keeps_its_references_in_its_output_folder(tmp_path, monkeypatch):
    from experiments.league.run import main

    tiny = LeagueConfig((("gmm", 2),), ("res_2m", "ipndm"), (5,))
    monkeypatch.setattr(LeagueConfig, "quick", classmethod(lambda cls: tiny))
    elsewhere = tmp_path / "working_directory"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    main(["--quick", "--device", "cpu", "--out", str(out)])
    assert (out / "league.csv").exists()
    assert len(list((out / "cache").glob("league-ref-*.pt"))) == 1
    assert not any(elsewhere.iterdir())


def test_an_entrant_spending_more_than_its_budget_is_caught(tmp_path, monkeypatch):
    def greedy(model, x, sigmas):
        model(x, sigmas[0] * x.new_ones(x.shape[0]))
        return ENTRANTS["res_2m"].run(model, x, sigmas)

    monkeypatch.setitem(ENTRANTS, "greedy", Entrant("greedy", "res", "res_2m", greedy))
    with pytest.raises(BudgetError, match="greedy"):
        run_league(LeagueConfig((("gmm", 2),), ("greedy",), (5,)), torch.device("cpu"), tmp_path)


def test_jacobian_eigenvalue_is_the_posterior_covariance_over_sigma_squared():
    from experiments.league.mechanisms import jacobian_eigenvalue

    # one Gaussian N(mu, diag(s^2)): dD/dx = diag(s^2 / (s^2 + sigma^2)), at most I
    s = torch.tensor([0.2, 0.5, 1.5], dtype=F64)
    gaussian = GaussianMixture(torch.ones(1, dtype=F64), torch.zeros(1, 3, dtype=F64),
                               torch.diag(s**2)[None])  # fmt: skip
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    got = jacobian_eigenvalue(gaussian.denoiser, x, 0.7)
    assert torch.allclose(got, (s.max() ** 2 / (s.max() ** 2 + 0.49)).expand(4), rtol=1e-10)
    # two narrow modes at +-1, halfway between them: Cov[x0 | x] ~ 1 along the axis
    modes = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=F64)
    narrow = 1e-4 * torch.eye(2, dtype=F64).repeat(2, 1, 1)
    pair = GaussianMixture(torch.ones(2, dtype=F64), modes, narrow)
    gain = jacobian_eigenvalue(pair.denoiser, torch.zeros(1, 2, dtype=F64), 0.5)
    assert 3.9 < gain.item() < 4.0  # about 1 / 0.5^2: this posterior leaves dD/dx <= I
