"""``hlsm fit``: fit a design's data, compare with the exact checker, save results and figures.

A run reads a design file (:mod:`hlsm.app.designfile`) with optional ``[fit]`` and ``[nuts]`` sections,
builds the data (a JSONL corpus given with ``--data``; or ``traces`` simulated traces per support
with corruption ``epsilon``; or, with ``traces = 0``, the population-limit corpus), fits it
(:func:`hlsm.infer.fitting.fit`), and writes to the output folder:

- ``params.pt``: every restart's ``alpha``, ``beta``, ``tables``, ``epsilon`` and loss history;
- ``metrics.json``: the configuration, restarts' objectives and spread, recovery against the
  simulator's truth (bindings, matched table TV, ARI / NMI of MAP selections), per-symbol and
  per-candidate views against the exact checker, the confusion table, and the NUTS summary;
- ``posterior.nc``: the NUTS posterior (ArviZ netCDF) when ``[nuts] run = true``;
- ``tables.png``, ``elbo.png``, ``predictive.png``: recovered vs true bindings / tables, the loss
  of every restart, and the predictive confidence on candidates coloured by the checker's verdict.

A NaN or infinite loss stops the fit; the state reached is saved to ``diverged.pt`` and the error
names the parameter that blew up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hlsm.app.designfile import IdentifyDesign, load_design, parse_design
from hlsm.app.fitmetrics import FitMetrics, Recovery, RestartRecord, SymbolView
from hlsm.config import build_dataclass
from hlsm.identify.checker import identify
from hlsm.identify.hlib import ContradictionError
from hlsm.infer.bayes import (
    DEFAULT_CONFIDENT,
    DEFAULT_EVIDENCE,
    DEFAULT_NEAR,
    bayesian_view,
    confusion,
    corpus_likelihood,
    near_best,
    open_rows,
)
from hlsm.infer.fitstate import FitError
from hlsm.infer.fitting import FitConfig, FitDivergedError, FitResult, fit
from hlsm.infer.likelihood import library_tables
from hlsm.infer.metrics import binding_accuracy, match_tables
from hlsm.infer.selections import map_selections, selection_recovery
from hlsm.io import atomic_write
from hlsm.programs import Program
from hlsm.runfolder import FIT, RunFolder
from hlsm.runtime import torch_threads
from hlsm.simulate import Corpus, concat, read_jsonl, simulate
from hlsm.spec import Spec
from hlsm.tracking import log_series


@dataclass(frozen=True)
class FitSection:
    """The ``[fit]`` section of a design file (every key optional)."""

    traces: int = 0
    """Traces simulated per support (SFT, RL); 0 = the population-limit corpus."""
    rl_traces: int | None = None
    """Traces simulated for the RL support, if not ``traces`` (answer-only traces cost more at scale)."""
    epsilon: float = 0.05
    """Corruption rate of simulated traces (and of the true tables recovery is measured against)."""
    seed: int = 0
    tables: str = "library"
    steps: int = 1000
    restarts: int = 4
    lr: float = 0.05
    concentration: float = 1.5
    data_weight: float = 1.0
    objective: str = "fast"
    confident: float = DEFAULT_CONFIDENT
    near: float = DEFAULT_NEAR
    evidence: float = DEFAULT_EVIDENCE
    """Nats the data must hold against a binding before it stops being open (:func:`hlsm.infer.bayes.open_rows`)."""
    view_inputs: int = 64
    """Input states per candidate of the Bayesian view when the fit is at scale (no tables built)."""
    workers: int = 1
    """Processes that build the scalable likelihood (at scale; the result does not depend on it)."""

    def __post_init__(self) -> None:
        for name in ("traces", "rl_traces"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 (0: the population-limit corpus), got {value}")
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {self.epsilon}")
        for name in ("view_inputs", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class NutsSection:
    """The ``[nuts]`` section: run the NUTS gold standard (tiny instances; library tables)."""

    run: bool = False
    chains: int = 2
    warmup: int = 200
    samples: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name, least in (("chains", 1), ("warmup", 0), ("samples", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")


def _data(design: IdentifyDesign, section: FitSection, data: str | None) -> tuple[Corpus, list[Program], Corpus | None]:
    """The corpus to fit, its support, and the noiseless corpus the checker reads (None: the data)."""
    support = list(design.sft) + list(design.rl)
    if data is not None:
        corpus = read_jsonl(design.spec, data)
        seen = {corpus.program(i) for i in range(len(corpus))}
        return corpus, support + sorted(seen - set(support)), None
    if section.traces == 0:
        return design.corpus(), support, None
    parts = []
    rl_traces = section.traces if section.rl_traces is None else section.rl_traces
    for i, (programs, exposure, split, count) in enumerate(
        (
            (design.sft, design.sft_exposure, "sft", section.traces),
            (design.rl, design.rl_exposure, "rl", rl_traces),
        )
    ):
        if programs and count > 0:
            parts.append(
                simulate(
                    design.spec,
                    list(programs),
                    count,
                    section.seed + i,
                    epsilon=section.epsilon,
                    exposure=exposure,
                    split=split,
                )
            )
    return concat(parts), support, design.corpus()


def _symbol_views(
    design: IdentifyDesign, result: FitResult, section: FitSection, checker: Any, opened: tuple[Any, Any]
) -> dict[str, SymbolView]:
    """Per symbol: the best restart's binding, its probability, restart agreement, the checker's verdict.

    A symbol counts as identified when its binding is confident, the near-best restarts agree and the
    data leave no other binding of it open (``opened``: :func:`hlsm.infer.bayes.open_rows`)."""
    spec, band = design.spec, near_best(result, section.near)
    best_run = result.restarts[result.best]
    # dense tables name skills arbitrarily: read every restart's skills as the best restart's, and
    # the best restart's as the library's, through Hungarian matching of the tables
    if section.tables == "library":  # library tables are the library's own: no relabelling
        to_best = [torch.arange(spec.num_skills) for _ in band]
        to_truth = torch.arange(spec.num_skills)
    else:  # dense tables are always built
        tables = [result.restarts[i].tables for i in band]
        assert best_run.tables is not None and all(t is not None for t in tables)
        to_best = [_relabel(t, best_run.tables, section.tables) for t in tables]  # type: ignore[arg-type]
        to_truth = _relabel(best_run.tables, library_tables(spec, section.epsilon), section.tables)
    out: dict[str, SymbolView] = {}
    for kind, names, symbols, attr, rows in (
        ("skill", spec.skills, spec.skill_symbols, "alpha", opened[0]),
        ("routing", spec.routings, spec.routing_symbols, "beta", opened[1]),
    ):
        best = getattr(best_run, attr)
        modes = torch.stack([getattr(result.restarts[i], attr).argmax(-1) for i in band])
        if kind == "skill":
            modes = torch.stack([relabel[mode] for relabel, mode in zip(to_best, modes, strict=True)])
        for s, sym in enumerate(symbols):
            prob = float(best[s].max())
            agree = bool((modes[:, s] == modes[0, s]).all())
            verdict = None if checker is None else getattr(checker, f"{kind}_identified")[s]
            fitted = int(best[s].argmax())
            out[sym] = SymbolView(
                kind=kind,
                true=names[s],
                fitted=names[int(to_truth[fitted])] if kind == "skill" else names[fitted],
                probability=prob,
                restarts_agree=agree,
                identified=prob >= section.confident and agree and int(rows[s].sum()) <= 1,
                checker=verdict,
            )
    return out


def _relabel(tables: torch.Tensor, reference: torch.Tensor, kind: str) -> torch.Tensor:
    """``(K,)``: the reference's label of each skill of ``tables`` (identity for library tables)."""
    k = tables.shape[0]
    if kind == "library":
        return torch.arange(k)
    perm = match_tables(tables, reference).permutation  # perm[i]: index in `tables` matched to reference i
    out = torch.empty(k, dtype=torch.long)
    out[torch.as_tensor(perm)] = torch.arange(k)
    return out


def _recovery(design: IdentifyDesign, result: FitResult, section: FitSection, corpus: Corpus) -> Recovery:
    spec, params = design.spec, result.params()
    k, m = spec.num_skills, spec.num_routings
    best = result.restarts[result.best]
    if best.tables is None:  # library tables at scale: each row's TV to the truth is |eps - eps_hat| (1 - 1/|X|)
        tv = abs(float(best.epsilon or 0.0) - section.epsilon) * (1 - 1 / spec.num_states)
        return Recovery(
            skill_binding_accuracy=binding_accuracy(params.alpha, list(range(k))),
            routing_binding_accuracy=binding_accuracy(params.beta, list(range(m))),
            matched_tv=[tv] * k,
            matched_tv_max=tv,
            epsilon=best.epsilon,
            matched_permutation=list(range(k)),
        )
    true_tables = library_tables(spec, section.epsilon)
    matching = match_tables(result.restarts[result.best].tables, true_tables)
    # library tables are the library's own: bindings are read without relabelling
    perm = None if section.tables == "library" else matching.permutation
    selections: dict[str, float] = {}
    if len(corpus) <= 20_000:
        support = sorted({corpus.program(i) for i in range(len(corpus))})
        selections = selection_recovery(corpus, map_selections(spec, params, support, corpus))
    return Recovery(
        skill_binding_accuracy=binding_accuracy(params.alpha, list(range(k)), perm),
        routing_binding_accuracy=binding_accuracy(params.beta, list(range(m))),
        matched_tv=matching.tv.tolist(),
        matched_tv_max=matching.max_tv,
        epsilon=result.restarts[result.best].epsilon,
        matched_permutation=[int(i) for i in (range(k) if perm is None else perm)],
        selections=selections,
    )


def fit_config(section: FitSection, progress: bool = True) -> FitConfig:
    """The :class:`FitConfig` of a ``[fit]`` section (validated: a bad value raises here)."""
    keys = ("steps", "lr", "restarts", "seed", "objective", "tables", "concentration", "data_weight", "workers")
    return FitConfig(**{k: getattr(section, k) for k in keys}, progress=progress)


def run_fit(
    design_path: str | Path | dict[str, Any] | IdentifyDesign,
    out: str | Path,
    data: str | None = None,
    progress: bool = True,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
) -> FitMetrics:
    """Run ``hlsm fit`` (see the module docstring); returns the metrics written to ``metrics.json``.

    ``design_path`` is a design file, an already-read design mapping (as :func:`load_design` reads
    it) or a parsed design (its ``sections`` hold ``[fit]`` and ``[nuts]``). The fit checkpoints to
    ``out/fit_state.pt`` as it goes; ``resume`` continues from it (a fresh run deletes it first).
    ``overrides`` (dotted keys, ``{"fit.steps": 50}``) change a design file's values as it is read.
    """
    if isinstance(design_path, dict):
        design = parse_design(design_path, "the design mapping")
        design_path = "<mapping>"
    elif isinstance(design_path, IdentifyDesign):
        design, design_path = design_path, "<design>"
    else:
        design = load_design(design_path, overrides)
    section = build_dataclass(FitSection, design.sections.get("fit", {}), "fit")
    nuts = build_dataclass(NutsSection, design.sections.get("nuts", {}), "nuts")
    config = fit_config(section, progress)
    folder = RunFolder(Path(out), FIT)
    with folder.lock():
        return _fit_into(folder, design, str(design_path), section, nuts, config, data, resume)


def _fit_into(
    folder: RunFolder,
    design: IdentifyDesign,
    design_path: str,
    section: FitSection,
    nuts: NutsSection,
    config: FitConfig,
    data: str | None,
    resume: bool,
) -> FitMetrics:
    """:func:`run_fit` once its inputs are read and its folder is locked."""
    folder.check_resume(resume, FitError, overwrite=True)  # a fresh fit replaces an old one's state
    out, state = folder.path, folder.state
    assert state is not None
    spec = design.spec
    with torch_threads(1):
        corpus, support, noiseless = _data(design, section, data)
        out.mkdir(parents=True, exist_ok=True)  # once the data are read: a refused run leaves no folder
        if not resume:
            state.unlink(missing_ok=True)

        try:
            result = fit(spec, corpus, support, config, checkpoint=state)
        except FitDivergedError as err:
            saved = out / "diverged.pt"
            reached = {"restart": err.restart, "step": err.step, "bad": err.bad, "logits": err.logits}
            reached["history"] = list(err.history)
            atomic_write(saved, lambda f: torch.save(reached, f), mode="wb")
            raise FitDivergedError(
                f"{err} (state saved to {saved})", err.restart, err.step, err.bad, err.logits, list(err.history)
            ) from None
        try:
            hypothesis_class = "lib" if section.tables == "library" else "tab"
            checker = identify(spec, noiseless or corpus, design.candidates, hypothesis_class, horizon=design.horizon)
            in_set: list[bool] | None = [v.identified for v in checker.verdicts]
        except ContradictionError:
            checker, in_set = None, None  # noisy data without a noiseless twin: no exact verdicts
        inputs = None
        if result.restarts[result.best].tables is None:  # at scale: the view reads fixed random inputs
            gen = torch.Generator().manual_seed(section.seed)
            inputs = torch.randint(spec.alphabet, (section.view_inputs, spec.length), generator=gen)
        opened = open_rows(spec, corpus_likelihood(spec, support, corpus, config), result.params(), section.evidence)
        views = bayesian_view(
            spec,
            result,
            design.candidates,
            confident=section.confident,
            near=section.near,
            inputs=inputs,
            opened=opened,
        )
        metrics = FitMetrics(
            design=design_path,
            data=data,
            traces=len(corpus),
            fit=asdict(section),
            restarts=[
                RestartRecord(
                    r.seed, r.objective, r.log_likelihood, len(r.history), r.converged, r.epsilon, r.interval_width
                )
                for r in result.restarts
            ],
            best=result.best,
            spread=result.spread,
            recovery=_recovery(design, result, section, corpus),
            symbols=_symbol_views(design, result, section, checker, opened),
            candidates=[{**v.to_dict(), "checker": None if in_set is None else in_set[i]} for i, v in enumerate(views)],
            confusion=None if in_set is None else confusion(views, in_set),
            nuts=_run_nuts(design, corpus, support, nuts, result, out) if nuts.run else None,
        )
    params = {
        "spec": spec.to_dict(),
        "best": result.best,
        "restarts": [
            {"alpha": r.alpha, "beta": r.beta, "tables": r.tables, "epsilon": r.epsilon, "history": list(r.history)}
            for r in result.restarts
        ],
        # the truth the dense tables are matched to (small: dense tables need |X| <= 4096 anyway)
        "truth": library_tables(spec, section.epsilon) if section.tables == "dense" else None,
    }
    atomic_write(out / "params.pt", lambda f: torch.save(params, f), mode="wb")
    for r, restart in enumerate(result.restarts):
        log_series(out, f"fit/restart_{r}/loss", list(restart.history))  # params.pt history, as saved
    folder.write_result(metrics.to_dict())
    draw_fit(out)
    return metrics


def draw_fit(out: str | Path) -> None:
    """Draw ``tables.png``, ``elbo.png`` and ``predictive.png`` from a fit's saved ``params.pt`` and
    ``metrics.json`` in ``out`` (the figures of :func:`run_fit`; rerun it to redraw them)."""
    from hlsm.app.plots import plot_fit_losses, plot_fit_predictive, plot_fit_tables

    out = Path(out)
    params = torch.load(out / "params.pt", weights_only=True)
    metrics = FitMetrics.from_dict(RunFolder(out, FIT).read_result())
    spec = Spec.from_dict(params["spec"])
    plot_fit_tables(spec, params, metrics.recovery, out / "tables.png")
    plot_fit_losses(params, [r.objective for r in metrics.restarts], out / "elbo.png")
    plot_fit_predictive(metrics.candidates, out / "predictive.png", metrics.fit["confident"])


def _run_nuts(
    design: IdentifyDesign, corpus: Corpus, support: list[Program], nuts: NutsSection, result: FitResult, out: Path
) -> dict[str, Any]:
    from hlsm.infer.nuts import NUTSConfig, compare_with_point, run_nuts

    config = NUTSConfig(chains=nuts.chains, warmup=nuts.warmup, samples=nuts.samples, seed=nuts.seed)
    posterior = run_nuts(design.spec, corpus, support, config)
    posterior.save(out / "posterior.nc")
    return {
        "summary": posterior.summary(),
        "versus_fit": compare_with_point(design.spec, posterior, result.params(), list(design.candidates)),
    }
