"""Where the image models run: `cpu` (onnxruntime's CPU provider, the default) or `cuda`
(onnxruntime's CUDA provider, for the backbone and both OCR stages).

The CUDA provider ships in the `onnxruntime-gpu` wheel, not in the CPU `onnxruntime` of
requirements.lock; both install the same `onnxruntime` module, so a GPU deployment swaps one
for the other at the locked version, with the lock's other packages unchanged:

    pip uninstall -y onnxruntime && pip install --no-deps onnxruntime-gpu==<the lock's onnxruntime version>

(CUDA 12 and cuDNN 9 on the host, as onnxruntime's CUDA provider page lists for that
version.) Asking for `cuda` where the provider is missing is an error at start, never a
silent fall-back to the CPU."""
from __future__ import annotations

DEVICES = ("cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"image device must be one of {', '.join(DEVICES)}, got {device!r}")
    return device


def cuda_available() -> bool:
    import onnxruntime as ort

    return CUDA_PROVIDER in ort.get_available_providers()


def providers(device: str) -> list:
    """onnxruntime execution providers for `device` (CPU kept last: ops without a CUDA kernel)."""
    import onnxruntime as ort

    if check_device(device) == "cpu":
        return ["CPUExecutionProvider"]
    if not cuda_available():
        raise RuntimeError(f"image device 'cuda' asked for, but onnxruntime {ort.__version__} has no "
                           f"{CUDA_PROVIDER} (available: {', '.join(ort.get_available_providers())}); "
                           "install onnxruntime-gpu in place of onnxruntime (models/device.py)")
    return [CUDA_PROVIDER, "CPUExecutionProvider"]
