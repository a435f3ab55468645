"""The engines that run a network for inference: ONNX Runtime on the CPU, PyTorch elsewhere.

docs/method.md, section 6.
"""

from __future__ import annotations

import torch

from comir.network.device import memory_format
from comir.network.model import Tiramisu

ENGINES = ("onnxruntime", "torch")


class OnnxRuntimeNetwork:
    """A network exported to ONNX (any input size) and run by ONNX Runtime on the CPU.

    The same CoMIR as the PyTorch network to float32 rounding (about 1e-6 of its range), faster
    on the CPU for more peak memory (the runtime's memory arena); timings and memory:
    benchmarks/bench_network.py, docs/results/speed.md ("networks"). Exported from the
    training-time graph (one concatenation per dense layer), which the runtime executes faster
    than the in-place feature buffer of PyTorch inference. Called like the module, on CPU tensors.
    """

    def __init__(self, model: Tiramisu, threads: int):
        """Export ``model`` and open an ONNX Runtime session with ``threads`` threads."""
        import io
        import warnings

        import onnxruntime

        self.config = model.config
        exported = io.BytesIO()
        example = torch.zeros(1, model.config.in_channels, model.config.multiple, model.config.multiple)
        # Traced with gradients enabled: the concatenating graph; the shape checks of forward are
        # constant for the tracer, which warns about that (harmlessly: sizes are checked again here).
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval().cpu(),
                example,
                exported,
                input_names=["image"],
                output_names=["comir"],
                dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "comir")},
                dynamo=False,
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        # The memory arena makes it fast; planning buffers per input size (mem pattern) only costs memory here.
        options.enable_mem_pattern = False
        self.session = onnxruntime.InferenceSession(exported.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The CoMIR of ``x`` (N, C, H, W), computed by ONNX Runtime, as a CPU tensor."""
        Tiramisu.check_input(self.config, x)
        image = x.detach().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"image": image})[0])


def inference_network(model: Tiramisu, engine: str, device: torch.device | str) -> Tiramisu | OnnxRuntimeNetwork:
    """The network as ``engine`` runs it: ONNX Runtime on the CPU, PyTorch on a GPU or when asked.

    Parameters
    ----------
    model : Tiramisu
        The trained network; put in eval mode on ``device`` (in its memory format) here.
    engine : str
        One of :data:`ENGINES`: ``"onnxruntime"`` (used only when ``device`` is the CPU) or ``"torch"``.
    device : torch.device or str
        Where the network runs.

    Returns
    -------
    Tiramisu or OnnxRuntimeNetwork
        An :class:`OnnxRuntimeNetwork` with ``torch.get_num_threads()`` threads for ONNX Runtime on
        the CPU, else ``model`` itself.

    Raises
    ------
    ValueError
        If ``engine`` is not one of :data:`ENGINES`.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown inference engine {engine!r}; use one of {ENGINES}")
    device = torch.device(device)
    model.eval().to(device, memory_format=memory_format(device))
    if engine == "onnxruntime" and device.type == "cpu":
        return OnnxRuntimeNetwork(model, torch.get_num_threads())
    return model
