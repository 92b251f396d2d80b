"""The experiment scales, named once: ``tiny`` (tests, seconds), ``cpu`` (``hlsm reproduce`` on 2 CPU
cores, the hour's budget) and ``gpu`` (one GPU). What each one trains is :func:`hlsm.lm.presets.scale_preset`;
this module holds only the names, so the command line can offer them without importing torch."""

SCALES = ("tiny", "cpu", "gpu")
