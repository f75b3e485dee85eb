"""The examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["kp3d_kernels.grid", "kp3d_kernels.modules", "kp3d_kernels._backend",
           "kp3d_kernels.ops.edge_map", "kp3d_kernels.ops.soft_argmax",
           "kp3d_kernels.ops.nearest_neighbor", "kp3d.model.keypoint_model", "kp3d.model.decoder",
           "kp3d.model.detector", "kp3d.config"]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
