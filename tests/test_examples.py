"""The examples in ``examples/`` run as written (at a tiny size) and print what they claim."""

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet18_example_runs_at_a_tiny_width(capsys):
    out = load("resnet18_mnist").main(samples=8, width=2, batch_size=4, products=3)
    text = capsys.readouterr().out
    assert "top-3 eigenvalues of layer4's block" in text
    assert out["top"].values.shape == (3, 3) and np.isfinite(out["top"].std).all()
    assert set(out["traces"]) == {"layer4.0", "layer4.0.downsample.0", "layer4.0.downsample.1",
                                  "layer4.0.bn1", "layer4.0.bn2", "layer4.0.conv1",
                                  "layer4.0.conv2", "layer4.1.bn1", "layer4.1.bn2",
                                  "layer4.1.conv1", "layer4.1.conv2"} - {"layer4.0"}
    assert out["line"].loss.shape == (5, 1) and np.isfinite(out["line"].loss).all()
