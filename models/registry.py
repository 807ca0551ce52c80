"""Readable registries of generators and discriminators (dict + decorator). Their keys are the
argparse ``choices`` of ``--netG`` / ``--netD``, so a typo fails at parse time with the valid names.

A builder takes a :class:`~models.config.ModelConfig` and returns an ``nn.Module``. The modules
that define networks register themselves on import; :func:`_load` imports them explicitly.
"""
from __future__ import annotations

from typing import Callable, Dict

GENERATORS: Dict[str, Callable] = {}
DISCRIMINATORS: Dict[str, Callable] = {}


def register_generator(name: str):
    """Decorator: ``@register_generator('healthivert') def build(cfg) -> nn.Module``."""
    def deco(fn: Callable) -> Callable:
        if name in GENERATORS:
            raise KeyError(f"generator {name!r} registered twice")
        GENERATORS[name] = fn
        return fn
    return deco


def register_discriminator(name: str):
    """Decorator: ``@register_discriminator('patchgan') def build(cfg) -> nn.Module``."""
    def deco(fn: Callable) -> Callable:
        if name in DISCRIMINATORS:
            raise KeyError(f"discriminator {name!r} registered twice")
        DISCRIMINATORS[name] = fn
        return fn
    return deco


def build_generator(cfg):
    return GENERATORS[cfg.generator](cfg)


def build_discriminator(cfg):
    return DISCRIMINATORS[cfg.discriminator](cfg)


def _load() -> None:
    """Explicit imports of the modules that register networks."""
    import models.discriminator  # noqa: F401
    import models.generator  # noqa: F401


_load()
