"""What the experiments share. The four finding experiments: their config's common fields, the scale
and cache they run with, and their command line (``--scale``, ``--seeds``, ``--out``, ``--cache``,
plus one optional list option of the experiment's own). The others: a ``--scale`` preset with an optional ``--out``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from hlsm.lm.presets import MODEL_LADDER, SCALES, ExperimentScale, scale_preset, with_size
from hlsm.parallel import BACKENDS

C = TypeVar("C", bound="ArmConfig")


@dataclass(frozen=True)
class ArmConfig:
    """The fields every finding experiment's ``Config`` has; each subclass sets ``out``'s default."""

    scale: str = "cpu"
    seeds: tuple[int, ...] | None = None  # None: the scale's seeds
    out: str = "runs/finding"
    cache: str | None = None  # None: <out>/../cache, shared with the other finding experiments
    size: str | None = None  # None: the scale's model; else a MODEL_LADDER size (hlsm.lm.presets)
    budget: int | None = None  # None: the scale's RL budget; else sampled traces per RL run
    backend: str = "local"  # local: the scale's worker processes; ray: Ray tasks (hlsm.parallel)
    address: str = ""  # ray: the cluster ("" starts a local instance)

    @classmethod
    def preset(cls: type[C], scale: str) -> C:
        return cls(scale=scale)

    def setup(self) -> tuple[ExperimentScale, Path, str]:
        """The scale preset (with ``seeds`` when given), the output folder and the SFT/RL cache folder."""
        scale = with_size(scale_preset(self.scale), self.size)
        scale = replace(scale, backend=self.backend, address=self.address)
        if self.budget is not None:
            rl = scale.rl
            scale = replace(scale, rl=replace(rl, rl=replace(rl.rl, budget_traces=self.budget)))
        out = Path(self.out)
        return replace(scale, seeds=self.seeds or scale.seeds), out, self.cache or str(out.parent / "cache")


def run_from_command_line(
    config: type[C], main: Callable[[C], Any], doc: str | None, *options: tuple[Any, ...]
) -> None:
    """Parse an :class:`ArmConfig` experiment's options and run ``main``; each of ``options`` is
    ``(field, help)`` of one of the experiment's own list options (of names; ``(field, help, type)``
    for another type)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    for option in options:
        kind = option[2] if len(option) > 2 else str
        parser.add_argument(f"--{option[0].replace('_', '-')}", nargs="+", type=kind, default=None, help=option[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--out", default=config.out)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--size", choices=list(MODEL_LADDER), default=None, help="the model of a ladder size")
    parser.add_argument("--budget", type=int, default=None, help="sampled traces per RL run (default: the scale's)")
    parser.add_argument("--backend", choices=BACKENDS, default="local", help="local processes or Ray tasks")
    parser.add_argument("--address", default="", help="ray: the cluster address ('' starts a local instance)")
    args: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(parser.parse_args()).items()}
    main(config(**args))


def preset_from_command_line(config: Any, doc: str | None) -> Any:
    """``config.preset(--scale)`` (a dataclass with an ``out`` field), ``--out`` replacing its folder when given."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    preset = config.preset(args.scale)
    return replace(preset, out=args.out) if args.out else preset
