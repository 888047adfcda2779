"""Checks shared by everything that takes model options (backbones, encoders, samplers): a value among its choices,
and a torch device, each failing with one clear line."""
from __future__ import annotations

from typing import Iterable


def check_choices(options: Iterable[tuple[str, object, Iterable]], owner: str | None = None) -> None:
    """(option name, value, allowed values) triples: the first value not allowed is a HarnessError."""
    from harness.errors import HarnessError

    for option, value, known in options:
        known = tuple(known)
        if value not in known:
            where = f" for {owner}" if owner else ""
            raise HarnessError(f"unknown {option} {value!r}{where} (known: {', '.join(map(str, known))})")


def torch_device(device: str, owner: str | None = None):
    """`torch.device(device)`, or a HarnessError naming the bad device (and who was given it)."""
    import torch

    from harness.errors import HarnessError

    try:
        return torch.device(device)
    except RuntimeError as e:
        where = f" for {owner}" if owner else ""
        raise HarnessError(f"invalid device {device!r}{where}: {' '.join(str(e).split())}") from None
