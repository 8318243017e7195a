"""The precisions a bundle can score in, as a type: the options of ``kinpath predict``,
``kinpath drift`` and :func:`kinpath.phenotyping.bundle.load_bundle` check against it.

Kept in a module of its own (no torch) so that the commands' ``--help`` and option
parsing name the allowed values without loading the network.
"""

from typing import Literal, get_args

Precision = Literal["auto", "fp32", "int8", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
