"""The applications: the ``hlsm`` command and the jobs behind its subcommands.

Modules: :mod:`~hlsm.app.cli` (the command), :mod:`~hlsm.app.quickstart` (the main job),
:mod:`~hlsm.app.reproduce` (every experiment, then ``docs/results.md``), :mod:`~hlsm.app.sweep`
(grids on a process pool or Ray), :mod:`~hlsm.app.export` and :mod:`~hlsm.app.rewards` (prompts and
the reward for verl / TRL), :mod:`~hlsm.app.bench` (benchmarks), :mod:`~hlsm.app.fitrun` (``hlsm
fit``), :mod:`~hlsm.app.designfile` (TOML design files), :mod:`~hlsm.app.report` (markdown tables),
:mod:`~hlsm.app.plots` (figures from saved results).

This layer sits on top: it may import everything below it, and nothing in the library imports it.
"""
