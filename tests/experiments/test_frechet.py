"""Tests of experiments.frechet: the Fréchet distance against closed forms, its safeguards and
errors, the feature networks, and the digits classifier checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.frechet import (
    DIGITS_CLASSIFIER,
    DigitsClassifierFeatures,
    RandomConvFeatures,
    TorchScriptFeatures,
    check_image_range,
    extract_features,
    frechet_distance,
    frechet_distance_of_features,
    frechet_distance_of_images,
    gaussian_fit,
    main,
)
from experiments.models.classifier import accuracy
from experiments.models.data import digits
from experiments.models.load import CheckpointError


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_identical_sets_have_zero_distance():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12))
    scale = np.trace(np.cov(features, rowvar=False))
    assert abs(frechet_distance_of_features(features, features)) < 1e-8 * scale


def test_commuting_covariances_match_closed_form():
    # diagonal covariances: d^2 = |m1 - m2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(1)
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_non_commuting_2x2_covariances_match_closed_form():
    # for a 2x2 matrix M with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M))
    rng = np.random.default_rng(2)
    for _ in range(5):
        c1, c2 = _random_spd(rng, 2), _random_spd(rng, 2)
        m1, m2 = rng.standard_normal(2), rng.standard_normal(2)
        product = c1 @ c2
        tr_root = math.sqrt(np.trace(product) + 2 * math.sqrt(np.linalg.det(product)))
        expected = np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * tr_root
        assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-9)
        assert frechet_distance(m2, c2, m1, c1) == pytest.approx(expected, rel=1e-9)


def test_sample_estimate_converges_to_closed_form():
    # 200k samples per Gaussian in 2-d: moment estimates are accurate to ~0.3%, so the fitted
    # distance must agree with the exact one to well within 3%.
    rng = np.random.default_rng(3)
    c1, c2 = _random_spd(rng, 2), _random_spd(rng, 2)
    m1, m2 = np.array([1.0, -1.0]), np.array([0.0, 2.0])
    x1 = rng.multivariate_normal(m1, c1, size=200_000)
    x2 = rng.multivariate_normal(m2, c2, size=200_000)
    exact = frechet_distance(m1, c1, m2, c2)
    assert frechet_distance_of_features(x1, x2) == pytest.approx(exact, rel=0.03)


def test_singular_covariances_are_handled():
    # 3 samples in 10-d: rank-deficient covariances; the result must be finite and ~0 for a set
    # against itself.
    rng = np.random.default_rng(4)
    features = rng.standard_normal((3, 10))
    value = frechet_distance_of_features(features, features)
    assert math.isfinite(value) and abs(value) < 1e-3
    assert math.isfinite(frechet_distance_of_features(features, rng.standard_normal((3, 10))))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_fit(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        extract_features(RandomConvFeatures(), torch.full((2, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="RGB"):
        RandomConvFeatures()(torch.zeros(2, 1, 8, 8))


def test_image_sets_outside_the_image_range_are_refused(tmp_path, capsys):
    extractor = RandomConvFeatures()
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for bad in (images * 127.5 + 127.5, images - 2):  # [0, 255] images; beyond -1
        with pytest.raises(ValueError, match=r"samples have values in .* outside \[-1, 1\]"):
            frechet_distance_of_images(bad, images, extractor)
        with pytest.raises(ValueError, match="reference images have values"):
            frechet_distance_of_images(images, bad, extractor)
    infinite = images.clone()
    infinite[0, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="samples contain NaN or infinity"):
        frechet_distance_of_images(infinite, images, extractor)
    rounded = images.clone()
    rounded[0, 0, 0, 0], rounded[1, 0, 0, 0] = 1 + 2e-7, -1 - 2e-7  # float rounding: accepted
    check_image_range(rounded)
    samples = tmp_path / "samples.pt"
    torch.save(digits("test") * 127.5 + 127.5, samples)
    with pytest.raises(SystemExit) as stop:
        main(["--model", "digits", "--samples", str(samples)])
    assert stop.value.code == 2
    assert f"--samples {samples}: samples have values in [0, 255]" in capsys.readouterr().err


def test_sampler_outputs_are_clamped_to_the_image_range_by_extract_features():
    """The sampling problems pass raw sampler outputs, which overshoot [-1, 1]."""
    extractor = RandomConvFeatures()
    overshoot = 3 * torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) - 1.5
    torch.testing.assert_close(
        extract_features(extractor, overshoot), extract_features(extractor, overshoot.clamp(-1, 1))
    )


def test_digits_classifier_checkpoint_reaches_its_recorded_accuracy():
    features = DigitsClassifierFeatures()
    x, y = digits("test", with_labels=True)
    recorded = features.metadata["held_out_accuracy"]
    assert recorded >= 0.95
    assert accuracy(features.classifier, x, y) == pytest.approx(recorded, abs=1e-6)
    assert extract_features(features, x[:10]).shape == (10, 64)


def test_fdd_orders_real_digits_before_noise(tmp_path, capsys):
    extractor = DigitsClassifierFeatures(DIGITS_CLASSIFIER)
    train, test = digits("train"), digits("test")
    real = frechet_distance_of_images(test, train, extractor)
    noise = torch.rand(test.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert real < 0.1 * frechet_distance_of_images(noise, train, extractor)
    samples = tmp_path / "samples.pt"
    torch.save(test, samples)
    assert main(["--model", "digits", "--samples", str(samples)]) == pytest.approx(real)
    assert "FDD" in capsys.readouterr().out


def test_digits_features_reject_bad_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        DigitsClassifierFeatures(bad)
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(CheckpointError, match="res-digits-classifier"):
        DigitsClassifierFeatures(bad)


def test_random_conv_features_are_fixed_by_the_seed():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    a, b, c = RandomConvFeatures(0), RandomConvFeatures(0), RandomConvFeatures(1)
    assert a(x).shape == (4, 256)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.allclose(a(x), c(x))


class _FeaturesWithKeyword(torch.nn.Module):
    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return pooled if return_features else pooled.sum(1)


class _FeaturesPlain(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
def test_torchscript_extractor_gets_0_255_rgb_images(tmp_path):
    keyword, plain = tmp_path / "keyword.pt", tmp_path / "plain.pt"
    torch.jit.script(_FeaturesWithKeyword()).save(str(keyword))
    torch.jit.script(_FeaturesPlain()).save(str(plain))
    x = torch.full((2, 1, 8, 8), 1.0)
    torch.testing.assert_close(TorchScriptFeatures(keyword)(x), torch.full((2, 3), 255.0))
    torch.testing.assert_close(TorchScriptFeatures(plain)(x - 1), torch.full((2, 3), 127.5))
    with pytest.raises(FileNotFoundError):
        TorchScriptFeatures(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="TorchScript"):
        TorchScriptFeatures(tmp_path / "junk.pt")
