"""``python -m hlsm``: the ``hlsm`` command (used under ``torchrun -m hlsm ...``)."""

from hlsm.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
