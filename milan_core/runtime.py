"""Stage 2c: running the model for its layers' outputs — PyTorch with hooks, or ONNX Runtime with taps.

On a CPU, ONNX Runtime runs EfficientNet-Lite0 about 2.5x faster than PyTorch eager. The chosen
layers become extra outputs of the exported graph (a wrapper module returns them beside the
logits), and their arrays reach the statistics as tensors sharing the runtime's memory
(``torch.from_numpy``), so the statistics are the same torch code whichever backend ran.

The graph is exported once per model and layer set and kept in the cache, under a hash of
everything it was made from (weights, architecture, layers, input size, torch and opset), so a
changed model can never meet an old graph; on top of that, the first batch is checked against
PyTorch and a disagreement past ``PARITY_TOLERANCE`` stops the job. A model that does not export
(an operator ONNX lacks, a non-tensor output) runs on PyTorch with one line saying why.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from milan_core.cache import cache_dir
from milan_core.errors import UserError
from milan_core.hooks import LayerRecorder, find_modules, first_tensor
from milan_core.models import LoadedModel

BACKENDS = ("auto", "torch", "onnxruntime")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OPSET = 17
EXPORT_FORMAT = 1  # bump when the wrapper's outputs change, so older cached graphs are not read
PARITY_TOLERANCE = 1e-4  # largest |onnx - torch| on the first batch, relative to the layer's largest |torch|
PARITY_IMAGES = 8  # images of the first batch run through both (BatchNorm is in eval mode: images are independent)


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto``: CUDA if present, else Apple's MPS, else the CPU; a named device must exist here."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {spec!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {spec}: torch sees no CUDA device on this machine; use --device cpu (or auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        f"numbered from 0")
    if device.type == "mps" and not has_mps:
        raise UserError(f"--device {spec}: Apple's MPS is not available here; use --device cpu (or auto)")
    return device


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, shared by every command that runs a model."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps; does not change the run id")


def statistics_device(device: torch.device) -> torch.device:
    """Where the statistics run: on the model's device, except MPS, which has no float64 (moments)."""
    return torch.device("cpu") if device.type == "mps" else device


def autocast(device: torch.device, precision: str):  # noqa: ANN201 (a context manager)
    """Mixed precision for the model's forward pass; fp32 runs as it is."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


class LayerForward(Protocol):
    """Runs a batch and returns each chosen layer's output as the layer gives it (any rank)."""

    backend: str

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def blank(self, size: int) -> dict[str, torch.Tensor]:
        """The outputs for one blank image, to size the statistics (no parity check)."""
        ...


class TorchForward:
    """PyTorch eager with forward hooks: any model, any layer."""

    backend = "torch"

    def __init__(self, loaded: LoadedModel, layers: Sequence[str], device: torch.device | None = None,
                 precision: str = "fp32") -> None:
        self.model = loaded.module
        self.recorder = LayerRecorder(loaded.module, layers)
        self.device = device or torch.device("cpu")
        self.precision = precision

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        self.recorder.outputs.clear()
        with autocast(self.device, self.precision):
            self.model(pixels.to(self.device, non_blocking=True))
        return dict(self.recorder.outputs)

    def blank(self, size: int) -> dict[str, torch.Tensor]:
        return self(torch.zeros(1, 3, size, size, device=self.device))


class LayerTaps(nn.Module):
    """The model with the chosen layers' outputs returned beside its logits (what gets exported)."""

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.layers = list(layers)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with LayerRecorder(self.model, self.layers) as recorder:
            logits = first_tensor(self.model(pixels))
        if logits is None:
            raise TypeError("the model's output is not a tensor")
        return (logits, *(recorder.outputs[name] for name in self.layers))


def graph_key(loaded: LoadedModel, layers: Sequence[str], size: int | None = None) -> str:
    """A hash of everything an exported graph depends on: any change gives another file."""
    digest = hashlib.sha256()
    module = loaded.module
    header = (EXPORT_FORMAT, OPSET, torch.__version__, type(module).__module__, type(module).__qualname__,
              repr(module), size or loaded.preprocessing.input_size, tuple(layers))
    digest.update(repr(header).encode())
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@contextmanager
def _quiet_descriptors() -> Iterator[None]:
    """Silence the exporter, which writes its whole graph to stderr from C++ when it fails."""
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


def export_graph(loaded: LoadedModel, layers: Sequence[str], path: Path, size: int | None = None) -> None:
    """Export the tapped model with a free batch size, atomically (a partial file is never seen).

    The graph's side is fixed (``size``, by default the model's input size): TensorFlow-style
    "same" padding is traced as constants for that side.
    """
    size = size or loaded.preprocessing.input_size
    taps = LayerTaps(loaded.module, layers).eval()  # eval: BatchNorm must use its running statistics
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    names = ["logits"] + [f"layer{i}" for i in range(len(layers))]
    try:
        with _quiet_descriptors(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                taps, (torch.zeros(1, 3, size, size),), str(partial), dynamo=False, opset_version=OPSET,
                input_names=["pixels"], output_names=names,
                dynamic_axes={name: {0: "batch"} for name in ["pixels", *names]},
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def session_options(threads: int | None = None):  # noqa: ANN201 (onnxruntime is imported lazily)
    """One session with the cores torch would use, threads that sleep instead of spinning when
    idle: the decoding workers and the statistics share the same cores between batches."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxForward:
    """ONNX Runtime over the exported graph; the first batch is also run by PyTorch and compared."""

    backend = "onnxruntime"

    def __init__(self, loaded: LoadedModel, layers: Sequence[str], path: Path, threads: int | None = None) -> None:
        import onnxruntime

        self.loaded = loaded
        self.layers = list(layers)
        self.session = onnxruntime.InferenceSession(
            str(path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.outputs = [f"layer{i}" for i in range(len(self.layers))]
        self.checked = False

    def raw(self, pixels: torch.Tensor, names: Sequence[str] | None = None) -> list[torch.Tensor]:
        """Each layer's output (or the named graph outputs) as the graph gives it, sharing ONNX
        Runtime's memory."""
        arrays = self.session.run(list(names or self.outputs), {"pixels": pixels.float().contiguous().numpy()})
        return [torch.from_numpy(array) for array in arrays]

    def check_parity(self, pixels: torch.Tensor) -> None:
        """Stop the job if the graph does not compute what the PyTorch model computes, on the
        layers and on the logits (a traced branch that the images do not take shows there)."""
        pixels = pixels[:PARITY_IMAGES]
        outputs = self.raw(pixels, ["logits", *self.outputs])
        with LayerRecorder(self.loaded.module, self.layers) as recorder, torch.inference_mode():
            logits = first_tensor(self.loaded.module(pixels))
        for name, output in zip(["logits", *self.layers], outputs):
            expected = (logits if name == "logits" else recorder.outputs[name]).float()
            error = (output - expected).abs().max().item()
            scale = max(expected.abs().max().item(), 1e-6)
            if not error <= PARITY_TOLERANCE * scale:
                raise UserError(
                    f"the ONNX export of {self.loaded.name} differs from PyTorch on {name} by {error:.3g} "
                    f"(largest activation {scale:.3g}); run with --backend torch"
                )

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.checked:
            self.check_parity(pixels)
            self.checked = True
        return dict(zip(self.layers, self.raw(pixels)))

    def blank(self, size: int) -> dict[str, torch.Tensor]:
        return dict(zip(self.layers, self.raw(torch.zeros(1, 3, size, size))))


def graph_path(loaded: LoadedModel, layers: Sequence[str], size: int | None = None) -> Path:
    return cache_dir() / "onnx" / f"{graph_key(loaded, layers, size)}.onnx"


def onnx_forward(loaded: LoadedModel, layers: Sequence[str], threads: int | None = None,
                 size: int | None = None) -> OnnxForward:
    """The cached graph of this model and layer set at this input side (by default the model's),
    exported first if there is none (or a damaged one)."""
    path = graph_path(loaded, layers, size)
    if path.is_file():
        try:
            return OnnxForward(loaded, layers, path, threads)
        except Exception:  # a truncated or foreign file: export again  # noqa: BLE001
            path.unlink(missing_ok=True)
    print(f"exporting {loaded.name} ({', '.join(layers)}) to ONNX once, cached in {path.parent}", file=sys.stderr)
    export_graph(loaded, layers, path, size)
    return OnnxForward(loaded, layers, path, threads)


def model_threads(workers: int) -> int:
    """Threads for the model and the statistics: the cores the decoding workers leave (at least one).

    Two threads on two cores where a decoding worker also runs were slower than one here (busy
    machine: 1.3-1.9 s against 1.1-1.3 s a batch of 32), and PyTorch's statistics with two threads
    were 10x slower than with one (OpenMP threads waiting on each other on shared cores)."""
    return max(1, torch.get_num_threads() - workers)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``threads`` for the block, then as they were."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"


@contextmanager
def layer_forward(loaded: LoadedModel, layers: Sequence[str], backend: str = "auto",
                  device: torch.device | None = None, workers: int = 0, precision: str = "fp32",
                  size: int | None = None) -> Iterator[LayerForward]:
    """The forward pass the job runs: ONNX Runtime when asked (or, with ``auto``, on a CPU), else
    PyTorch; a model that cannot be exported falls back to PyTorch with one line on stderr.
    ``size``: the side of the images it will be given, when not the model's input size (the
    ONNX graph is exported for one side).

    With ONNX Runtime, it and the statistics share the cores the ``workers`` decoding processes
    leave; PyTorch keeps its own thread count (its model runs in it)."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    find_modules(loaded.module, layers)  # unknown names: the user's mistake, not a reason to fall back
    autocast(torch.device("cpu"), precision)  # checks the name
    on_cpu = device is None or device.type == "cpu"
    if backend == "onnxruntime" and not on_cpu:
        raise UserError(f"--backend onnxruntime runs on the CPU only; drop it or use --device cpu (not {device})")
    if backend == "onnxruntime" and precision != "fp32":
        raise UserError(f"--backend onnxruntime runs in fp32 only; drop it for --precision {precision}")
    if backend != "torch" and on_cpu and precision == "fp32":
        threads = model_threads(workers)
        try:
            forward = onnx_forward(loaded, layers, threads, size)
        except Exception as error:  # the exporter's and runtime's errors have no common type  # noqa: BLE001
            print(f"note: {loaded.name} runs on torch, its ONNX export failed ({_first_line(error)})", file=sys.stderr)
        else:
            with torch_threads(threads):
                yield forward
            return
    torch_forward = TorchForward(loaded, layers, device, precision)
    with torch_forward.recorder:
        yield torch_forward
