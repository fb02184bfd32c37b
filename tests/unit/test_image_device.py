"""The image models' device setting: cpu by default, cuda only where onnxruntime has the CUDA
provider (an error at start otherwise, never a silent CPU fall-back), and on a GPU the same
results as on the CPU within float tolerance (skipped, saying why, on CPU-only machines)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.device import CUDA_PROVIDER, check_device, cuda_available, providers
from models.embedder import FeatureExtractor, letterbox

pytestmark = pytest.mark.unit

NO_GPU = ("no CUDA here: onnxruntime has no CUDAExecutionProvider (the CPU wheel is installed); "
          "install onnxruntime-gpu on a GPU host to run this check (models/device.py)")


def test_device_names_are_checked():
    assert check_device("cpu") == "cpu" and providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="cpu, cuda"):
        check_device("gpu")


def test_settings_read_the_device(monkeypatch):
    from zeroscan.settings import Settings

    monkeypatch.setenv("ZEROSCAN_IMAGE_DEVICE", "cuda")
    assert Settings.from_env().image_device == "cuda"
    monkeypatch.setenv("ZEROSCAN_IMAGE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="image device"):
        Settings.from_env()
    monkeypatch.delenv("ZEROSCAN_IMAGE_DEVICE")
    assert Settings.from_env().image_device == "cpu"


def test_the_job_and_the_portal_pass_the_device_on(monkeypatch):
    from pipelines.scanner_job import image_config
    from zeroscan.settings import Settings

    monkeypatch.setenv("ZEROSCAN_IMAGE_DEVICE", "cuda")
    assert image_config(Settings.from_env()).device == "cuda"
    monkeypatch.delenv("ZEROSCAN_IMAGE_DEVICE")
    assert image_config(Settings.from_env()).device == "cpu"


@pytest.mark.skipif(cuda_available(), reason="CUDA is available here: the missing-provider error cannot happen")
def test_cuda_without_the_provider_fails_at_start():
    from models.ocr import TextReader

    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        FeatureExtractor(threads=1, device="cuda")
    with pytest.raises(RuntimeError, match=CUDA_PROVIDER):
        TextReader(threads=1, device="cuda")


def _photo() -> np.ndarray:
    rng = np.random.default_rng(7)
    img = np.full((240, 360, 3), 235, np.uint8)
    cv2.rectangle(img, (20, 130), (340, 220), (40, 90, 200), -1)
    cv2.putText(img, "ZEROSCAN 42", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (10, 10, 10), 3)
    noise = rng.integers(0, 12, img.shape, dtype=np.uint8)
    return cv2.add(img, noise)


@pytest.mark.skipif(not cuda_available(), reason=NO_GPU)
def test_cuda_gives_the_cpu_results():
    """Backbone feature maps within 1e-2 (relative to their scale) and the same OCR text."""
    from models.ocr import TextReader

    photo = _photo()
    canvas = letterbox(photo, 448)[0]
    cpu = FeatureExtractor(threads=1).features([canvas, canvas[::-1].copy()])
    gpu = FeatureExtractor(threads=1, device="cuda").features([canvas, canvas[::-1].copy()])
    scale = float(np.abs(cpu).max())
    np.testing.assert_allclose(gpu, cpu, atol=1e-2 * scale, rtol=1e-2)
    (cpu_lines,) = TextReader(threads=1).read([photo])
    (gpu_lines,) = TextReader(threads=1, device="cuda").read([photo])
    assert [line.text for line in gpu_lines] == [line.text for line in cpu_lines] and cpu_lines
    for a, b in zip(cpu_lines, gpu_lines):
        assert abs(a.score - b.score) < 1e-2
        np.testing.assert_allclose(a.box, b.box, atol=2.0)
