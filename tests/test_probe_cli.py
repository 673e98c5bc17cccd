"""``deepscope probe``: your own model on your own data, stored and cached like a study.

Each run here is tiny (a few hundred parameters or a narrow ResNet-18, 32–48 MNIST images,
a 3×3 surface), so a test is a few seconds. The models come from a module written into a
temporary directory and imported as ``module.path:factory``, as a user's would be.
"""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.cli import main
from deepscope.models import resnet18
from deepscope.probes import hessian_eigenvalues
from deepscope.store import load_run, study_runs

# The cheapest settings that still run every probe; --set keys of the probe config.
TINY = ["--samples", "32", "--seeds", "2", "--set", "k=2", "--set", "trace_products=6",
        "--set", "density_steps=4", "--set", "density_probes=1", "--set", "resolution=3",
        "--no-progress", "--executor", "local"]

MODULE = '''
import torch
from torch import nn
from deepscope.models import resnet18


def small_cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 10))


def tiny_resnet():
    return resnet18(width=2)


def rgb_net():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 2, 5, stride=4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 36, 10))


def not_a_model():
    return 3


class TokenLM(nn.Module):
    """A next-token model that returns its own loss, as HuggingFace causal LMs do."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.emb = nn.Embedding(11, 4)
        self.out = nn.Linear(4, 11)

    def forward(self, input_ids, labels):
        logits = self.out(torch.tanh(self.emb(input_ids)))
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11),
                                           labels[:, 1:].reshape(-1))
        return {"loss": loss, "logits": logits}


def token_lm():
    return TokenLM()


class AttentionLM(TokenLM):
    """TokenLM with one causal self-attention layer through F.scaled_dot_product_attention,
    whose fused CPU kernel (what HuggingFace models call) has no double backward; ``eager``
    writes the same attention out with a softmax."""

    def __init__(self, eager=False):
        super().__init__()
        self.eager = eager
        self.qkv = nn.Linear(4, 12)

    def forward(self, input_ids, labels):
        h = torch.tanh(self.emb(input_ids))
        q, k, v = self.qkv(h).unsqueeze(1).chunk(3, -1)  # (B, 1 head, T, 4)
        if self.eager:
            T = q.shape[-2]
            mask = torch.ones(T, T, dtype=torch.bool).tril()
            scores = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~mask, float("-inf"))
            a = scores.softmax(-1) @ v
        else:
            a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        logits = self.out(h + a.squeeze(1))
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11),
                                           labels[:, 1:].reshape(-1))
        return {"loss": loss, "logits": logits}


def attention_lm():
    return AttentionLM()


def attention_lm_eager():
    return AttentionLM(eager=True)


def tokens():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 11, (24, 6), generator=g)
    return [{"input_ids": ids[i:i + 8], "labels": ids[i:i + 8]} for i in range(0, 24, 8)]


def pairs():
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, 1, 28, 28, generator=g), torch.randint(0, 10, (40,), generator=g)


def loader():
    x, y = pairs()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def shuffled():
    x, y = pairs()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16,
                                       shuffle=True)


def broken():
    raise RuntimeError("no such file: /data/train.bin")
'''


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working directory holding ``usermodels.py``, as a user's project would."""
    (tmp_path / "usermodels.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def probe(here, *argv):
    return main(["probe", *TINY, *argv, "--out", str(here / "res")])  # argv overrides TINY


def the_run(here, index=-1):
    return study_runs(here / "res", "probe")[index]


def test_a_resnet18_is_probed_end_to_end_and_its_report_section_drawn(here, capsys):
    """The project's ResNet-18 layout (torchvision's module names; torchvision's PyPI wheel
    does not import against the CPU torch here) at width 2, with batch norm in eval mode."""
    assert probe(here, "usermodels:tiny_resnet", "--data", "mnist") == 0
    out = capsys.readouterr().out
    run = the_run(here)
    r = run.result
    assert r["hessian.values"].shape == (2, 2) and r["trace.values"].shape == (2,)
    assert r["surface.loss"].shape == (3, 3) and np.isfinite(r["surface.loss"]).all()
    assert r["sensitivity"].shape == (32,) and float(r["grad_norm"]) > 0
    assert int(r["params.total"]) == sum(p.numel() for p in resnet18(width=2).parameters())
    assert "Top-2 Hessian eigenvalues" in out and "mean ± sd over 2 runs" in out
    # the stored top eigenvalue is the library's on the same model and data
    from deepscope.studies.probe import Config, setup
    s = setup(Config(model="usermodels:tiny_resnet", samples=32))
    again = hessian_eigenvalues(s.model, s.loss, s.data, k=2, tol=1e-3, seed=0).values
    assert torch.allclose(again.double(), torch.as_tensor(r["hessian.values"][0]), rtol=1e-4)
    html = (here / "res" / "report.html").read_text()
    assert "Probed models" in html and "probe: usermodels:tiny_resnet on mnist" in html
    assert html.count('alt="probe-') >= 4  # eigenvalues, density, surface, sensitivity


def test_a_second_run_takes_every_piece_from_the_cache_and_a_new_model_gets_its_own(here):
    assert probe(here, "usermodels:small_cnn", "--probe", "hessian,surface") == 0
    first = the_run(here)
    assert first.meta["pieces_from_cache"] == 0
    assert probe(here, "usermodels:small_cnn", "--probe", "hessian,surface") == 0
    again = the_run(here)
    assert again.path == first.path and again.meta["pieces_from_cache"] == 2 + 3  # seeds, rows
    np.testing.assert_array_equal(again.result["surface.loss"], first.result["surface.loss"])
    assert probe(here, "usermodels:tiny_resnet", "--probe", "hessian") == 0
    runs = study_runs(here / "res", "probe")
    assert len(runs) == 2
    html = (here / "res" / "report.html").read_text()
    assert "usermodels:small_cnn on mnist" in html and "usermodels:tiny_resnet on mnist" in html


def test_surface_rows_spread_over_a_process_pool_give_the_local_numbers(here):
    args = ["usermodels:small_cnn", "--probe", "surface,grad-norm"]
    assert main(["probe", *TINY, *args, "--out", str(here / "a")]) == 0
    assert main(["probe", *TINY, *args, "--out", str(here / "b"), "--executor", "process",
                 "--workers", "2"]) == 0  # no --threads: it would set this process's count
    a, b = (study_runs(here / d, "probe")[-1] for d in ("a", "b"))
    assert b.meta["executor"]["name"] == "process"
    np.testing.assert_allclose(b.result["surface.loss"], a.result["surface.loss"], rtol=1e-6)


def test_weights_from_pt_and_safetensors_are_the_same_model(here):
    safetensors = pytest.importorskip("safetensors.torch")
    import usermodels

    m = usermodels.small_cnn()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    torch.save(m.state_dict(), here / "w.pt")
    safetensors.save_file(m.state_dict(), str(here / "w.safetensors"))
    got = {}
    for f in ("w.pt", "w.safetensors", None):
        extra = ["--weights", str(here / f)] if f else []
        assert probe(here, "usermodels:small_cnn", "--probe", "grad-norm", *extra) == 0
        got[f] = float(the_run(here).result["grad_norm"])
    assert got["w.pt"] == got["w.safetensors"] != got[None]


def test_a_grey_image_is_repeated_for_a_three_channel_model_and_the_findings_say_so(here,
                                                                                    capsys):
    assert probe(here, "usermodels:rgb_net", "--probe", "grad-norm") == 0
    assert "grey channel repeated to 3" in capsys.readouterr().out
    assert int(the_run(here).result["data.repeat"]) == 3


def test_dict_batches_use_the_models_own_loss_and_skip_the_input_jacobian(here, capsys):
    assert probe(here, "usermodels:token_lm", "--data", "usermodels:tokens",
                 "--probe", "hessian,sensitivity") == 0
    out = capsys.readouterr().out
    assert "3 batch(es)" in out and "not measured" in out
    assert "sensitivity" not in the_run(here).result


def test_a_model_with_fused_attention_gets_its_curvature_from_the_math_kernel(here):
    """F.scaled_dot_product_attention picks a fused kernel with no double backward on the
    CPU; curvature probes run it on its math backend, the same function as eager attention."""
    args = ["--data", "usermodels:tokens", "--probe", "hessian,trace,density,grad-norm"]
    assert probe(here, "usermodels:attention_lm", *args) == 0
    fused = the_run(here).result
    assert probe(here, "usermodels:attention_lm_eager", *args) == 0
    eager = the_run(here).result
    assert np.isfinite(fused["hessian.values"]).all()
    np.testing.assert_allclose(fused["hessian.values"], eager["hessian.values"], rtol=1e-4)
    np.testing.assert_allclose(fused["trace.values"], eager["trace.values"], rtol=1e-3)
    np.testing.assert_allclose(fused["grad_norm"], eager["grad_norm"], rtol=1e-5)


def test_the_huggingface_example_is_probed_from_its_config_and_its_factory(here, capsys,
                                                                         monkeypatch):
    """examples/hf_causal_lm.py with examples/tiny-gpt2/config.json, as its docstring runs it:
    GPT-2's attention is the fused kernel above, its batches dicts, its loss its own."""
    pytest.importorskip("transformers")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    data = ["--data", "examples.hf_causal_lm:token_batches", "--probe",
            "hessian,trace,surface,sensitivity,grad-norm"]
    assert probe(here, "hf:examples/tiny-gpt2", *data) == 0
    out = capsys.readouterr()
    assert "32 samples in 1 batch(es)" in out.out and "not measured" in out.out
    assert "loss_type" not in out.err  # GPT-2's loss named, not warned about
    from_config = the_run(here).result
    assert probe(here, "examples.hf_causal_lm:tiny_gpt2", *data) == 0
    from_factory = the_run(here).result
    assert from_config["hessian.values"].shape == (2, 2)
    assert np.isfinite(from_config["surface.loss"]).all()
    for key in ("hessian.values", "trace.values", "surface.loss", "grad_norm"):
        np.testing.assert_allclose(from_factory[key], from_config[key], rtol=1e-5)


def test_a_loader_is_streamed_and_agrees_with_the_same_data_in_one_batch(here):
    assert probe(here, "usermodels:small_cnn", "--data", "usermodels:loader",
                 "--probe", "trace,grad-norm", "--samples", "40") == 0
    streamed = the_run(here).result
    assert int(streamed["data.batches"]) == 3
    assert probe(here, "usermodels:small_cnn", "--data", "usermodels:pairs",
                 "--probe", "trace,grad-norm", "--samples", "40") == 0
    whole = the_run(here).result
    assert int(whole["data.batches"]) == 1
    np.testing.assert_allclose(streamed["grad_norm"], whole["grad_norm"], rtol=1e-5)
    np.testing.assert_allclose(streamed["trace.values"], whole["trace.values"], rtol=1e-4)


def test_a_shuffling_loader_is_refused_as_a_failed_probe_with_the_fix(here, capsys):
    """Caught on the probe's second pass: the run fails (exit 1) and the report says why."""
    assert probe(here, "usermodels:small_cnn", "--data", "usermodels:shuffled",
                 "--probe", "grad-norm", "--samples", "40") == 1
    err = capsys.readouterr().err
    assert "shuffle=False" in err
    assert "failed" in (here / "res" / "report.html").read_text()


@pytest.mark.parametrize("argv, says", [
    (["resnet18"], "is not one of module.path:factory"),
    (["nosuchmodule_xyz:make"], "cannot import 'nosuchmodule_xyz'"),
    (["usermodels:small_cn"], "did you mean 'small_cnn'"),
    (["usermodels:not_a_model"], "returned a int, not an nn.Module"),
    (["hf:/no/such/config.json"], "hf:"),
    (["usermodels:small_cnn", "--data", "mnsit"], "did you mean 'mnist'"),
    (["usermodels:small_cnn", "--data", "usermodels:broken"],
     "raised RuntimeError: no such file"),
    (["usermodels:small_cnn", "--data", "usermodels:not_a_model"], "returned a int"),
    (["usermodels:small_cnn", "--weights", "missing.pt"], "no such file"),
    (["usermodels:small_cnn", "--params", "layer9.*"], "--params layer9.*"),
    (["usermodels:small_cnn", "--probe", "hesian"], "hesian"),
    (["usermodels:small_cnn", "--mode", "train"], "batch norm"),
    (["usermodels:token_lm"], "does not take DATA mnist"),
    (["usermodels:small_cnn", "--samples", "0"], "samples"),
    (["usermodels:small_cnn", "--set", "sample=3"], "did you mean 'samples'"),
])
def test_bad_specs_exit_2_with_one_line_that_names_the_fix(here, capsys, argv, says):
    assert probe(here, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("deepscope: error:")
    assert says in err
    assert not (here / "res" / "probe").exists()  # nothing ran, nothing stored


def test_weights_that_do_not_fit_or_are_not_a_state_dict_exit_2(here, capsys):
    import usermodels

    torch.save(usermodels.rgb_net().state_dict(), here / "other.pt")
    torch.save({"model": nn.Linear(2, 2)}, here / "pickled.pt")
    (here / "w.txt").write_text("0")
    for f, says in (("other.pt", "does not fit MODEL"), ("pickled.pt", "cannot be read"),
                    ("w.txt", "unknown format")):
        assert probe(here, "usermodels:small_cnn", "--weights", str(here / f)) == 2
        assert says in capsys.readouterr().err


def test_a_model_package_that_is_absent_or_broken_is_one_line(here, capsys, monkeypatch):
    """Absent: how to install it. Installed but built for another torch (torchvision's PyPI
    wheel with the CPU torch here raises "operator torchvision::nms does not exist"): say so."""
    import importlib

    real = importlib.import_module

    def packages(name, *args):
        if name == "torchvision":
            raise ModuleNotFoundError("No module named 'torchvision'")
        if name == "timm":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", packages)
    assert probe(here, "torchvision:resnet18") == 2
    assert "pip install" in capsys.readouterr().err
    assert probe(here, "timm:resnet18") == 2
    assert "cannot be imported" in capsys.readouterr().err


def test_show_probe_lists_its_settings(capsys):
    assert main(["show", "probe"]) == 0
    out = capsys.readouterr().out
    assert "trace_products" in out and "batch_size" in out


def test_the_stored_config_names_the_model_and_data(here):
    assert probe(here, "usermodels:small_cnn", "--probe", "grad-norm") == 0
    cfg = json.loads((the_run(here).path / "config.json").read_text())["config"]
    assert cfg["model"] == "usermodels:small_cnn" and cfg["data"] == "mnist"
    assert load_run(the_run(here).path).meta["data"].keys() == {"model", "data"}
