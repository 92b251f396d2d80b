"""The experiments of ``hlsm reproduce``: one module per experiment, each run as its own process.

``python -m hlsm.sims.<name> --scale tiny|cpu|gpu --out DIR`` writes ``DIR/results.json``, its
figures and ``DIR/report.md``; :mod:`hlsm.app.reproduce` runs them in order and assembles
``docs/results.md``. Nothing in the library imports these modules; they ship with the package so
that a reproduction works from an installed wheel as from a checkout.
"""
