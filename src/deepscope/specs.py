"""What ``deepscope probe MODEL --data DATA [--weights FILE]`` names, resolved.

A *spec* is a string from the command line. MODEL is one of

* ``module.path:factory`` — any importable callable returning an ``nn.Module`` (the current
  directory is importable, as for ``python -m``), called with no arguments;
* ``torchvision:NAME`` — ``torchvision.models.get_model(NAME, weights=None, num_classes=K)``,
  random initialisation (no download);
* ``timm:NAME`` — ``timm.create_model(NAME, pretrained=False, num_classes=K, in_chans=C)``;
* ``hf:CONFIG_OR_DIR`` — a HuggingFace causal language model built from a ``config.json``
  (random initialisation), or from a local directory, with its weights when the directory
  holds them (never a download).

K and C are the data's classes and channels. WEIGHTS is a state dict: ``.pt``/``.pth``
(``torch.load(weights_only=True)``: tensors only, no pickled code runs) or ``.safetensors``.

DATA is one of deepscope's classification sets (``mnist``, ``fashion-mnist``, ``mnist1d``),
of which ``samples`` stratified training samples are used, or ``module.path:fn``, a callable
returning a :class:`~deepscope.data.Data`, an ``(x, y)`` pair of tensors, a
``torch.utils.data.Dataset``, or a re-iterable of batches (a ``DataLoader``, a list; dict
batches too), of which the first ``samples`` samples are used.

Every error here is a :class:`~deepscope.errors.UsageError` of one line that names the fix:
``deepscope probe`` exits 2 before any work starts.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .data import CLASSIFICATION_SETS, Data
from .data import load as load_set
from .errors import UsageError, suggest
from .probes.batches import batch_size, tensors

MODEL_FORMS = "module.path:factory, torchvision:NAME, timm:NAME or hf:CONFIG_OR_DIR"
DATA_FORMS = f"one of deepscope's data sets ({', '.join(CLASSIFICATION_SETS)}) or module.path:fn"
PACKAGES = {"torchvision": "the torchvision build made for your torch",
            "timm": "timm", "hf": "transformers safetensors"}
EXTRAS = {"torchvision": "vision", "timm": "timm", "hf": "hf"}


# --- importing what a spec names --------------------------------------------------------------


def _callable(spec: str, what: str) -> Any:
    """The object ``module.path:name`` names, imported with the working directory on the path."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise UsageError(f"{what} {spec!r} is not module.path:name")
    if os.getcwd() not in sys.path:  # `deepscope probe mymodel:make` run next to mymodel.py
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # ImportError, or the module itself failing to run
        raise UsageError(f"cannot import {module!r} for {what} {spec!r} ({type(e).__name__}: "
                         f"{e}); run from the directory that holds it, or install it") from None
    obj = mod
    for part in name.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise UsageError(f"{module!r} has no {name!r} for {what} {spec!r}; "
                             f"{suggest(part, public)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{what} {spec!r} names a {type(obj).__name__}, not a callable")
    return obj


def _package(kind: str) -> Any:
    """The optional package behind a ``torchvision:``/``timm:``/``hf:`` spec."""
    name = {"hf": "transformers"}.get(kind, kind)
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UsageError(f"{kind}: models need {name}, which is not installed: pip install "
                         f"{PACKAGES[kind]} (or pip install -e '.[{EXTRAS[kind]}]' with "
                         "torch pinned)") from None
    except Exception as e:  # installed, but built for another torch (e.g. a CUDA wheel)
        raise UsageError(f"{name} is installed but cannot be imported ({type(e).__name__}: "
                         f"{str(e).splitlines()[0]}): install the {name} build made for your "
                         f"torch {torch.__version__}, or use module.path:factory (e.g. "
                         "deepscope.models:resnet18)") from None


def _source(obj: Any) -> str:
    """SHA-256 of the file that defines ``obj`` (its code is part of what a result means)."""
    try:
        path = inspect.getsourcefile(obj) or ""
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except (OSError, TypeError):
        return "no source file"


# --- models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A model a spec names, and what identifies it: the kind (``module``, ``torchvision``,
    ``timm``, ``hf``), the code that built it (a source hash or a package version)."""

    model: nn.Module
    kind: str
    code: str


def build_model(spec: str, *, num_classes: int | None = None, in_channels: int | None = None
                ) -> Built:
    """The model ``spec`` names (see the module docstring), in float32 on the CPU.

    Raises:
        UsageError: a malformed spec, a module or name that cannot be imported, a missing
            optional package, an unknown model name, or a factory that fails or does not
            return an ``nn.Module``.
    """
    kind, sep, name = spec.partition(":")
    if not sep or not kind or not name:
        raise UsageError(f"MODEL {spec!r} is not one of {MODEL_FORMS}")
    if kind == "torchvision":
        tv = _package(kind)
        known = tv.models.list_models()
        if name not in known:
            raise UsageError(f"torchvision has no model {name!r}; {suggest(name, known)}")
        kw = {"num_classes": num_classes} if num_classes else {}
        model, code = tv.models.get_model(name, weights=None, **kw), f"torchvision {tv.__version__}"
    elif kind == "timm":
        timm = _package(kind)
        known = timm.list_models()
        if name not in known:
            raise UsageError(f"timm has no model {name!r}; {suggest(name, known)}")
        kw = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_channels)) if v}
        model, code = timm.create_model(name, pretrained=False, **kw), f"timm {timm.__version__}"
    elif kind == "hf":
        model, code = _hf_model(name), f"transformers {_package(kind).__version__}"
    else:
        factory = _callable(spec, "MODEL")
        try:
            model = factory()
        except Exception as e:
            raise UsageError(f"MODEL {spec}() raised {type(e).__name__}: {e}") from None
        kind, code = "module", _source(factory)
    if not isinstance(model, nn.Module):
        raise UsageError(f"MODEL {spec}() returned a {type(model).__name__}, not an nn.Module")
    return Built(model.float(), kind, code)


def _hf_model(path: str) -> nn.Module:
    """A causal LM from a ``config.json`` (random weights) or a local model directory."""
    transformers = _package("hf")
    p = Path(path)
    if not p.exists():
        raise UsageError(f"hf:{path}: no such config file or directory; give a config.json "
                         "or a local model directory (deepscope never downloads)")
    try:
        if p.is_dir() and any((p / f).exists() for f in ("model.safetensors",
                                                          "pytorch_model.bin")):
            model = transformers.AutoModelForCausalLM.from_pretrained(p, local_files_only=True)
        else:
            config = transformers.AutoConfig.from_pretrained(p, local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"hf:{path} is not a causal-LM config or model directory "
                         f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if getattr(model, "loss_type", "") is None:  # a class name with no loss in it (GPT-2):
        model.loss_type = "ForCausalLM"  # the loss transformers falls back to, with a warning
    return model


def load_weights(model: nn.Module, path: str) -> None:
    """Load the state dict in ``path`` (``.pt``/``.pth`` or ``.safetensors``) into ``model``
    strictly (the loaded parameters enter :func:`model_identity`).

    Raises:
        UsageError: no such file, an unknown suffix, a file that is not a state dict of
            tensors, or keys or shapes that do not match the model.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--weights {path}: no such file")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UsageError("--weights *.safetensors needs safetensors: pip install "
                             "safetensors") from None
        loader = load_file
    elif p.suffix in (".pt", ".pth", ".bin"):
        loader = lambda f: torch.load(f, map_location="cpu", weights_only=True)  # noqa: E731
    else:
        raise UsageError(f"--weights {path}: unknown format {p.suffix!r}; give a state dict "
                         "as .pt/.pth (torch.save(model.state_dict(), ...)) or .safetensors")
    try:
        state = loader(str(p))
    except Exception as e:  # corrupt, truncated, or pickled objects other than tensors
        raise UsageError(f"--weights {path} cannot be read as a state dict of tensors "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); save it with "
                         "torch.save(model.state_dict(), path)") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UsageError(f"--weights {path} holds a {type(state).__name__}, not a state dict "
                         "of tensors; save it with torch.save(model.state_dict(), path)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        detail = " ".join(s.strip() for s in first[1:3]) if len(first) > 1 else first[0]
        raise UsageError(f"--weights {path} does not fit MODEL: {detail[:300]}") from None


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The model's first 2-D convolution in registration order (None for none)."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


# --- data ------------------------------------------------------------------------------------


@dataclass
class ProbeData:
    """The data a probe reads: ``data`` (one batch or a re-iterable of batches, as every
    probe takes it), ``inputs`` (the model inputs, for the input-Jacobian; None for dict
    batches), ``samples`` and ``batches`` counted, ``num_classes`` (None: unknown or not a
    classification) and ``channels`` of image inputs."""

    data: Any
    inputs: Tensor | None
    samples: int
    batches: int
    num_classes: int | None
    channels: int | None


class _First:
    """The first ``samples`` samples of a re-iterable of batches, re-iterable itself (the last
    batch cut to size): a ``DataLoader`` is read anew on every pass, never materialised."""

    def __init__(self, loader: Any, samples: int) -> None:
        self.loader, self.samples = loader, samples

    def __iter__(self) -> Iterator[Any]:
        left = self.samples
        for b in self.loader:
            if left <= 0:
                return
            n = batch_size(b)
            yield b if n <= left else head(b, left)
            left -= n


def head(batch: Any, n: int) -> Any:
    """The first ``n`` samples of every tensor of a batch."""
    if isinstance(batch, Tensor):
        return batch[:n]
    if isinstance(batch, dict):
        return {k: head(v, n) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(head(v, n) for v in batch)
    return batch


def _chunks(x: Tensor, y: Tensor, size: int | None) -> Any:
    """One ``(x, y)`` batch, or a list of batches of ``size``."""
    if size is None or size >= len(x):
        return (x, y)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def load_data(spec: str, *, samples: int, batch_size: int | None = None, seed: int = 0,
              data_dir: str | Path | None = None, download: bool = False) -> ProbeData:
    """The data ``spec`` names (see the module docstring), cut to ``samples`` samples, in
    batches of ``batch_size`` (None: one batch for the tensor forms; a loader keeps its own).

    Raises:
        UsageError: an unknown set, a fn that cannot be imported or fails, a return value of
            no usable form, or no samples.
    """
    if ":" not in spec:
        if spec not in CLASSIFICATION_SETS:
            raise UsageError(f"DATA {spec!r} is not {DATA_FORMS}; "
                             f"{suggest(spec, list(CLASSIFICATION_SETS))}")
        d = load_set(spec, subset=samples, test_subset=10, seed=seed, data_dir=data_dir,
                     download=download)
        return _from_tensors(d.x_train, d.y_train, batch_size, d.num_classes, spec)
    fn = _callable(spec, "DATA")
    try:
        out = fn()
    except Exception as e:
        raise UsageError(f"DATA {spec}() raised {type(e).__name__}: {e}") from None
    if isinstance(out, Data):
        return _from_tensors(out.x_train[:samples], out.y_train[:samples], batch_size,
                             out.num_classes, spec)
    if isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out):
        y = out[1][:samples]
        return _from_tensors(out[0][:samples], y, batch_size, _classes(y), spec)
    if isinstance(out, torch.utils.data.Dataset) and hasattr(out, "__len__") and hasattr(
            out, "__getitem__") and not isinstance(out, torch.utils.data.IterableDataset):
        n = min(samples, len(out))
        out = torch.utils.data.DataLoader(torch.utils.data.Subset(out, range(n)),
                                          batch_size=batch_size or 64, shuffle=False)
    if not hasattr(out, "__iter__") or isinstance(out, Tensor | dict | str):
        raise UsageError(f"DATA {spec}() returned a {type(out).__name__}; return a "
                         "deepscope Data, an (x, y) pair of tensors, a Dataset or a "
                         "re-iterable of batches (a DataLoader with shuffle=False, a list)")
    if inspect.isgenerator(out) or iter(out) is out:
        raise UsageError(f"DATA {spec}() returned a one-shot iterator; probes read the data "
                         "once per pass: return a list or a DataLoader")
    stream = _First(out, samples)
    n, xs, ys = 0, [], []
    for b in stream:  # one pass: sizes, and the inputs and targets of (x, y) batches
        n += batch_size_or_fail(b, spec)
        pair = isinstance(b, tuple | list) and len(b) >= 2 and all(
            isinstance(t, Tensor) for t in b[:2])
        xs.append(b[0] if pair else None)
        ys.append(b[1] if pair else None)
    if not xs:
        raise UsageError(f"DATA {spec}() gave no batches")
    pairs = all(x is not None for x in xs)
    inputs = torch.cat(xs) if pairs else None
    classes = _classes(torch.cat(ys)) if pairs else None
    data = stream if len(xs) > 1 else next(iter(stream))
    return ProbeData(data, inputs, n, len(xs), classes, _channels(inputs))


def batch_size_or_fail(batch: Any, spec: str) -> int:
    try:
        return batch_size(batch)
    except ValueError as e:
        raise UsageError(f"DATA {spec}(): {e}") from None


def _classes(y: Tensor) -> int | None:
    """The class count of integer targets (their maximum + 1), None for real-valued ones."""
    if y.is_floating_point() or y.dim() != 1 or not len(y):
        return None
    return int(y.max()) + 1


def _channels(x: Tensor | None) -> int | None:
    return int(x.shape[1]) if x is not None and x.dim() == 4 else None


def _from_tensors(x: Tensor, y: Tensor, size: int | None, classes: int | None,
                  spec: str) -> ProbeData:
    if not len(x):
        raise UsageError(f"DATA {spec} has no samples")
    data = _chunks(x, y, size)
    count = 1 if isinstance(data, tuple) else len(data)
    return ProbeData(data, x, len(x), count, classes, _channels(x))


def fit_channels(model: nn.Module, channels: int | None) -> int | None:
    """How many times to repeat a grey image's one channel for ``model`` (3 for a model whose
    first convolution takes 3 channels, e.g. torchvision's ResNets, on MNIST); None if the
    data fits as it is."""
    conv = first_conv(model)
    if channels == 1 and conv is not None and conv.in_channels == 3:
        return 3
    return None


def repeat_channels(batch: Any, times: int | None) -> Any:
    """``(x, y)`` batches (or a stream of them) with ``x``'s channel repeated ``times``."""
    if not times:
        return batch
    if isinstance(batch, tuple) and isinstance(batch[0], Tensor):
        return (batch[0].expand(-1, times, *batch[0].shape[2:]), *batch[1:])
    if isinstance(batch, list):
        return [repeat_channels(b, times) for b in batch]
    return _Mapped(batch, lambda b: repeat_channels(tuple(b), times))


class _Mapped:
    """A re-iterable whose batches pass through ``fn`` on every pass."""

    def __init__(self, data: Any, fn: Any) -> None:
        self.data, self.fn = data, fn

    def __iter__(self) -> Iterator[Any]:
        return (self.fn(b) for b in self.data)


def to_device(data: Any, device: torch.device) -> Any:
    """Every tensor of a batch, a list of batches or a stream of them on ``device`` (a stream
    moves each batch as it is read, so memory stays that of one batch)."""
    if isinstance(data, Tensor):
        return data.to(device)
    if isinstance(data, dict):
        return {k: to_device(v, device) for k, v in data.items()}
    if isinstance(data, tuple | list):
        return type(data)(to_device(v, device) for v in data)
    return data if device.type == "cpu" else _Mapped(data, lambda b: to_device(b, device))


# --- identities (part of every cache key) ------------------------------------------------------


def model_identity(built: Built) -> str:
    """SHA-256 of the model's code, its module tree and every parameter and buffer."""
    h = hashlib.sha256(f"{built.kind}\n{built.code}\n{built.model!r}\n".encode())
    for name, t in built.model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def data_identity(pd: ProbeData) -> str:
    """SHA-256 of every tensor of every batch the probes will read, in order."""
    h = hashlib.sha256()
    batches = [pd.data] if isinstance(pd.data, tuple | dict | Tensor) else pd.data
    for b in batches:
        for t in tensors(b):
            h.update(f"{tuple(t.shape)} {t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
                     .tobytes())
    return h.hexdigest()

