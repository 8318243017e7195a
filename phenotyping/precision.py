"""The precisions a bundle can score in, as a type: the options of ``kinpath predict``,
``kinpath drift`` and :func:`kinpath.phenotyping.bundle.load_bundle` check against it;
and the precision a fit trains in when its config says ``trainer.precision: auto``.

Kept in a module of its own (no torch at import) so that the commands' ``--help`` and
option parsing name the allowed values without loading the network.
"""

from pathlib import Path
from typing import Literal, get_args

Precision = Literal["auto", "fp32", "int8", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

# the instruction sets with which a CPU multiplies bf16 in hardware; elsewhere oneDNN
# emulates bf16, slower than fp32
BF16_INSTRUCTIONS = ("avx512_bf16", "amx_bf16")


def cpu_info() -> tuple[str | None, set[str]]:
    """The first processor's model name and instruction-set flags, from Linux's
    /proc/cpuinfo; ``(None, set())`` elsewhere."""
    model: str | None = None
    flags: set[str] = set()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in info.split("\n\n", 1)[0].splitlines():  # the first processor's block
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    return model, flags


def bf16_instructions() -> list[str]:
    """Those of :data:`BF16_INSTRUCTIONS` this CPU has (none where /proc/cpuinfo is not)."""
    flags = cpu_info()[1]
    return [f for f in BF16_INSTRUCTIONS if f in flags]


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX)."""
    return bool(bf16_instructions())


def training_precision(accelerator: object = "auto") -> tuple[str, str]:
    """What ``trainer.precision: auto`` trains in on this machine, and why: ``bf16-mixed``
    on a CUDA GPU with bf16 and on a CPU that multiplies bf16 in hardware; ``32-true``
    elsewhere (an older GPU, Apple's MPS, a CPU that would emulate bf16). ``accelerator``
    is the trainer's (``auto``, ``cpu``, ``gpu``/``cuda``, ``mps`` or an Accelerator)."""
    import torch

    name = str(accelerator if isinstance(accelerator, str) else type(accelerator).__name__)
    name = name.lower()
    cuda = name == "gpu" or "cuda" in name or (name == "auto" and torch.cuda.is_available())
    if cuda:
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"{torch.cuda.get_device_name()} computes in bf16"
        return "32-true", "this GPU has no bf16"
    mps = "mps" in name or (name == "auto" and torch.backends.mps.is_available())
    if mps:
        return "32-true", "Apple's MPS: bf16 autocast not used"
    found = bf16_instructions()
    if found:
        return "bf16-mixed", f"this CPU multiplies bf16 in hardware ({', '.join(found)})"
    return (
        "32-true",
        "this CPU has no bf16 instructions (avx512_bf16, amx_bf16): it would emulate them",
    )
