"""Work and memory estimated before they are spent: one place for the limits hlsm refuses above.

A command that would enumerate or allocate more than these limits stops before it starts, with the
estimate and the fix, instead of running for minutes or failing in the allocator:

- :data:`MAX_CANDIDATES` candidate programs in a design (``[candidates] depth`` enumerates
  ``(M K)^depth`` of them: 13.8 million at depth 3 on the default library);
- :data:`MAX_PROGRAM_DEPTH` steps in a program of a design file;
- :data:`MEMORY_FRACTION` of the machine's physical memory for one array (corpora, predictive tables,
  the sequences a benchmark or the probe decodes at once: :func:`decoding_bytes`).
"""

from __future__ import annotations

import os

from hlsm.errors import HLSMError

MAX_CANDIDATES = 200_000
"""Most candidate programs a design may enumerate (identify, fit and export judge every one)."""

MAX_PROGRAM_DEPTH = 64
"""Most steps a program of a design file may have (the traces, the histories the checker and the fit
build, and the prompts all grow with it; the experiments use depth 4)."""

MEMORY_FRACTION = 0.5
"""Largest share of the machine's physical memory one array may take."""


class LimitError(HLSMError):
    """Work or memory above a documented limit; the message gives the estimate and the fix."""


def physical_memory() -> int:
    """Bytes of physical memory (a large default where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_memory(what: str, nbytes: int, fix: str) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` above :data:`MEMORY_FRACTION` of physical memory."""
    limit = MEMORY_FRACTION * physical_memory()
    if nbytes > limit:
        raise LimitError(
            f"{what} would take about {_size(nbytes)}, more than {MEMORY_FRACTION:.0%} of this machine's "
            f"{_size(physical_memory())}; {fix}"
        )


def check_count(what: str, count: int, limit: int, fix: str) -> None:
    """Refuse to enumerate ``count`` items of ``what`` above ``limit``."""
    if count > limit:
        raise LimitError(f"{what}: {count:,} of them, more than the limit of {limit:,}; {fix}")


def decoding_bytes(sequences: int, length: int, n_layer: int, d_model: int) -> int:
    """Memory of decoding ``sequences`` token sequences of ``length`` at once: their tokens (int64) and
    the key/value cache of every layer (fp32), the dominant terms."""
    return sequences * length * (8 + 2 * n_layer * d_model * 4)


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB", "EB"):
        if nbytes < 1024 or unit == "EB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:,.1f} EB"
