"""What ``trainer.precision: auto`` picks, on each kind of hardware (mocked: no test needs a GPU)."""

import pytest
import torch

from kinpath.phenotyping import precision
from kinpath.phenotyping.precision import training_precision


@pytest.mark.parametrize(
    ("accelerator", "cuda", "bf16_gpu", "cpu_bf16", "want"),
    [
        ("auto", True, True, [], "bf16-mixed"),
        ("gpu", True, False, ["avx512_bf16"], "32-true"),  # a GPU without bf16: not the CPU's
        ("auto", False, False, ["amx_bf16"], "bf16-mixed"),
        ("auto", False, False, [], "32-true"),
        ("cpu", True, True, [], "32-true"),  # asked for the CPU on a GPU machine
        ("cpu", True, True, ["avx512_bf16"], "bf16-mixed"),
    ],
)
def test_training_precision_follows_the_hardware(
    monkeypatch: pytest.MonkeyPatch, accelerator: str, cuda: bool, bf16_gpu: bool,
    cpu_bf16: list[str], want: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a GPU")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(precision, "bf16_instructions", lambda: cpu_bf16)
    got, why = training_precision(accelerator)
    assert got == want
    assert why  # the log line says why
    if cpu_bf16 and not cuda and want == "bf16-mixed":
        assert cpu_bf16[0] in why
