"""The SamplerCustom-style node: a ``SAMPLER`` (``KSAMPLER``) with the method's parameters."""

from __future__ import annotations

import math

import pytest
import torch

import res_torch

WIDGETS = dict(eta=0.0, noise_type="ancestral", s_noise=1.0, c2=0.5, c3=1.0, s_churn=0.0,
               s_tmin=0.0, s_tmax=1e4)  # fmt: skip


def test_node_declares_comfyui_interface(comfy):
    node = comfy.pack.NODE_CLASS_MAPPINGS["ResTorchSampler"]
    assert comfy.pack.NODE_DISPLAY_NAME_MAPPINGS["ResTorchSampler"] == "res_torch Sampler"
    assert node.RETURN_TYPES == ("SAMPLER",)
    assert callable(getattr(node(), node.FUNCTION))
    required = node.INPUT_TYPES()["required"]
    assert set(required) == {"method", *WIDGETS}
    assert set(required["method"][0]) == {"auto"} | set(res_torch.SAMPLERS) | set(
        res_torch.available_tableaux()
    )
    for name, value in WIDGETS.items():
        if name != "noise_type":
            assert required[name][1]["default"] == value
            assert required[name][1]["min"] <= value <= required[name][1]["max"]
    assert required["noise_type"][0] == ["default", "ancestral", "sde"]
    assert required["noise_type"][1]["default"] == "default"


def get_sampler(comfy, method, **changes):
    node = comfy.pack.NODE_CLASS_MAPPINGS["ResTorchSampler"]()
    return node.get_sampler(method, **{**WIDGETS, **changes})[0]


def test_node_sampler_is_a_ksampler_with_the_method_options(comfy):
    sampler = get_sampler(comfy, "res_3s", c2=0.4, c3=0.9, eta=0.5, noise_type="sde")
    assert isinstance(sampler, comfy.samplers.KSAMPLER)
    assert sampler.sampler_function is comfy.pack.sampler.comfy_sampler("res_3s")
    assert sampler.extra_options == dict(WIDGETS, c2=0.4, c3=0.9, eta=0.5, noise_type="sde")
    krogstad = get_sampler(comfy, "krogstad")
    assert "c2" not in krogstad.extra_options and "c3" not in krogstad.extra_options
    # "default" passes no noise_type: the method's own (sde for res_2m, ancestral for res_2s)
    assert "noise_type" not in get_sampler(comfy, "res_2m", noise_type="default").extra_options


def test_node_run_equals_res_torch_with_the_same_options(comfy, gaussian, noise):
    sigmas = res_torch.get_sigmas_karras(6, 0.03, 14.6)
    sampler = get_sampler(comfy, "res_2s", c2=0.3, s_churn=1.0, s_tmin=0.1, s_tmax=5.0)
    ms = comfy.model_sampling.ModelSamplingVE()
    torch.manual_seed(0)
    out = comfy.guider(ms, gaussian.ve).sample(
        noise, torch.zeros_like(noise), sampler, sigmas, disable_pbar=True
    )
    torch.manual_seed(0)
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2)
    options = dict(eta=0.0, noise_type="ancestral", s_noise=1.0, c2=0.3, s_churn=1.0,
                   s_tmin=0.1, s_tmax=5.0)  # fmt: skip
    expected = res_torch.sample(gaussian.ve, x, sigmas, method="res_2s", disable=True, **options)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_parameter_the_method_lacks_is_an_error_unless_left_at_default(comfy):
    from res_torch_nodes.nodes import NodeParameterError

    with pytest.raises(NodeParameterError, match="krogstad has no parameter c2.*res_2s"):
        get_sampler(comfy, "krogstad", c2=0.3)
    with pytest.raises(NodeParameterError, match="res_2s has no parameter c3.*res_3s"):
        get_sampler(comfy, "res_2s", c3=0.8)
    assert issubclass(NodeParameterError, res_torch.ResError)


@pytest.mark.parametrize(("method", "changes"), [("res_2s", {"c2": 0.0}),
                                                 ("res_3s", {"c2": 0.7}),
                                                 ("res_3s", {"c3": 0.5})])  # fmt: skip
def test_parameter_outside_its_interval_is_an_error(comfy, method, changes):
    with pytest.raises(res_torch.TableauError, match="outside"):
        get_sampler(comfy, method, **changes)


def test_unknown_method_is_an_error(comfy):
    with pytest.raises(res_torch.UnknownMethodError, match="unknown method 'res_9s'"):
        get_sampler(comfy, "res_9s")


@pytest.mark.parametrize(
    ("method", "changes", "error"),
    [
        ("res_2s", {"eta": -1.0}, res_torch.NoiseError),
        ("res_2s", {"noise_type": "bogus"}, res_torch.NoiseError),
        ("euler", {"eta": 1.0, "noise_type": "sde"}, res_torch.NoiseError),
        ("res_2s", {"s_churn": 1.0, "s_tmin": 5.0, "s_tmax": 1.0}, res_torch.NoiseError),
        ("res_2s", {"s_noise": math.nan}, res_torch.NoiseError),
    ],
)
def test_the_node_refuses_bad_options_when_it_runs(comfy, method, changes, error):
    with pytest.raises(error):
        get_sampler(comfy, method, **changes)


def test_every_menu_method_passes_the_nodes_check_at_its_defaults(comfy):
    for method in comfy.pack.NODE_CLASS_MAPPINGS["ResTorchSampler"].INPUT_TYPES()["required"][
        "method"
    ][0]:
        get_sampler(comfy, method)
