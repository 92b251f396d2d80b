"""The ``hlsm`` command.

Subcommands: ``modules``, ``simulate``, ``identify``, ``fit``, ``quickstart``, ``examples``,
``train sft``, ``train rl``, ``evaluate``, ``probe``, ``reproduce``, ``sweep``, ``export``,
``bench``. The design, config and grid options read ``example:NAME`` as the packaged example of
that name (:mod:`hlsm.examples`; ``hlsm examples list``). Bad
input (an unknown module, a malformed config, an impossible design, an unwritable output path)
prints one message naming the input and the fix, and exits with code 2.

The argument parser and one short handler per subcommand; each handler imports its job on first
use, so ``hlsm --help`` imports no torch.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from hlsm.config import ConfigError, apply_overrides, build_dataclass, check_sections, load_toml, parse_overrides
from hlsm.errors import HLSMError, SlipWarning, shorten
from hlsm.io import check_target, write_json
from hlsm.lock import writing
from hlsm.scales import SCALES

EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class SimulateConfig:
    """The ``[simulate]`` section of a simulate config.

    ``n`` traces are drawn uniformly over the programs of ``splits`` (each trace labelled with its
    split), with one exposure and corruption rate, and written as JSONL to ``out``.
    """

    n: int = 10_000
    seed: int = 0
    splits: tuple[str, ...] = ("sft",)
    exposure: str = "full"
    epsilon: float = 0.0
    out: str = "runs/simulate/corpus.jsonl"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")


def _cmd_modules(args: argparse.Namespace) -> None:
    from hlsm.modules import routings, skills
    from hlsm.spec import Spec

    spec = Spec(alphabet=args.alphabet, length=args.length)
    rows: list[dict[str, Any]] = []
    for s in skills():
        rows.append(
            {
                "name": s.name,
                "symbol": s.symbol,
                "kind": "skill",
                "bijective": s.bijective,
                "supported": s.supports(spec.alphabet, spec.length),
                "description": s.description,
            }
        )
    for r in routings():
        rows.append(
            {
                "name": r.name,
                "symbol": r.symbol,
                "kind": "routing",
                "bijective": None,
                "supported": r.supports(spec.alphabet, spec.length),
                "description": r.description,
            }
        )
    if args.json:
        _print_json({"alphabet": spec.alphabet, "length": spec.length, "modules": rows}, indent=2)
        return
    sym_w = max(7, *(len(r["symbol"]) + 1 for r in rows))
    name_w = max(14, *(len(r["name"]) + 1 for r in rows))
    print(f"{'symbol':<{sym_w}}{'kind':<9}{'name':<{name_w}}{'bij.':<6}description")
    for row in rows:
        bij = "" if row["bijective"] is None else ("yes" if row["bijective"] else "no")
        print(f"{row['symbol']:<{sym_w}}{row['kind']:<9}{row['name']:<{name_w}}{bij:<6}{row['description']}")


def _cmd_simulate(args: argparse.Namespace) -> None:
    from hlsm.design import DesignConfig, make_design
    from hlsm.simulate import simulate, summarize, write_jsonl
    from hlsm.spec import Spec
    from hlsm.traces import check_exposure

    raw: dict[str, Any] = load_toml(args.config) if args.config else {}
    raw = apply_overrides(raw, parse_overrides(args.set))
    check_sections(raw, ("spec", "design", "simulate"), f"'{args.config}'" if args.config else "")
    spec_raw = dict(raw.get("spec", {}))
    for key in ("alphabet", "length", "skills", "routings"):
        value = getattr(args, key)
        if value is not None:
            spec_raw[key] = value.split(",") if key in ("skills", "routings") else value
    spec = Spec.from_dict(spec_raw)
    design_cfg = DesignConfig.from_dict(raw.get("design", {}))
    if args.depth is not None:  # deeper depths the config sets are kept (and checked against it)
        given = "deeper_depths" in raw.get("design", {})
        deeper = design_cfg.deeper_depths if given else (args.depth + 1, args.depth + 2)
        design_cfg = DesignConfig.from_dict(
            {**design_cfg.to_dict(), "train_depth": args.depth, "deeper_depths": deeper}
        )
    job = build_dataclass(SimulateConfig, raw.get("simulate", {}), "simulate")
    overrides = {
        k: getattr(args, k) for k in ("n", "seed", "exposure", "epsilon", "out") if getattr(args, k) is not None
    }
    if args.splits is not None:
        overrides["splits"] = tuple(args.splits.split(","))
    try:
        job = replace(job, **overrides)
    except ValueError as err:
        raise ConfigError(f"[simulate]: {err}") from None
    check_exposure(job.exposure)
    design = make_design(spec, design_cfg)
    programs, labels = [], []
    for split in job.splits:
        for p in design.programs(split):
            if p not in programs:
                programs.append(p)
                labels.append(split)
    corpus = simulate(spec, programs, job.n, job.seed, exposure=job.exposure, epsilon=job.epsilon, split=labels)
    out = Path(job.out)
    for target in (out, out.with_suffix(".config.json")):
        check_target(target)
    with writing(out, "corpus file"):
        write_jsonl(corpus, out)
        config = {"spec": spec.to_dict(), "design": design_cfg.to_dict(), "simulate": asdict(job)}
        write_json(out.with_suffix(".config.json"), config)
    summary = summarize(corpus)
    print(f"wrote {len(corpus):,} traces to {out}")
    _print_json({"depth": summary["depth"], "split": summary["split"]})


def _cmd_compare(args: argparse.Namespace) -> None:
    from hlsm.app.compare import compare_regimes, comparison_table

    cls = "lib" if args.hypothesis_class == "both" else args.hypothesis_class
    record = compare_regimes([args.design, *args.compare], cls)
    if args.figure:
        from hlsm.app.plots import plot_regime_comparison

        write_json(Path(args.figure).with_suffix(".json"), record)
        plot_regime_comparison(record, args.figure)
    if args.json:
        _print_json(record, indent=2)
        return
    print(f"{len(record['rows'])} candidate programs under {len(record['regimes'])} regimes (H-{cls}):\n")
    print(comparison_table(record))
    first = record["regimes"][0]["name"]
    for name, added in record["adds"].items():
        print(f"\n{name} identifies {len(added)} candidate(s) that {first} does not" + (":" if added else "."))
        for program in added[:10]:
            print(f"  {program}")
        if len(added) > 10:
            print(f"  ... and {len(added) - 10} more")


def _cmd_identify(args: argparse.Namespace) -> None:
    from hlsm.app.designfile import load_design
    from hlsm.identify.checker import identify
    from hlsm.identify.graph import graph_diagnostics

    if args.compare:
        _cmd_compare(args)
        return
    design = load_design(args.design)
    corpus = design.corpus()
    classes = ["lib", "tab"] if args.hypothesis_class == "both" else [args.hypothesis_class]
    results = {c: identify(design.spec, corpus, design.candidates, c, horizon=design.horizon) for c in classes}
    main_result = results[classes[0]]
    support = list(design.sft) + list(design.rl)
    report: dict[str, Any] = {
        "design": str(args.design),
        "traces": len(corpus),
        "unseen_total": len(design.candidates),
        "generalisation_set_size": len(main_result.generalisation_set),
        "hypothesis_class": classes[0],
        "support_graph": graph_diagnostics(design.spec, support),
        **{c: r.to_dict() for c, r in results.items()},
    }
    if args.figure:  # saved beside the figure first (FIGURE.json), then drawn from that record
        from hlsm.app.plots import plot_support_graph
        from hlsm.identify.graph import graph_record

        figure = {
            "graph": graph_record(design.spec, support),
            "candidates": graph_record(design.spec, design.candidates),
            "identification": main_result.to_dict(),
        }
        write_json(Path(args.figure).with_suffix(".json"), figure)
        plot_support_graph(figure["graph"], figure["identification"], args.figure, figure["candidates"])
    if args.json:
        _print_json(report, indent=2)
        return
    spec = design.spec
    print(f"design {args.design}: {len(corpus):,} traces, {len(design.candidates)} candidate programs")
    for c, r in results.items():
        data = r.to_dict()
        bound = " (lower bound)" if r.lower_bound else "" if r.exact else " (compared on probe states)"
        print(
            f"\n== H-{c}: generalisation set {data['generalisation_set_size']}/{data['unseen_total']}{bound}, "
            f"horizon L* = {r.horizon}"
        )
        for sym, row in data["routings"].items():
            status = "identified" if row["identified"] else "NOT identified"
            print(f"  routing {sym:<4} {status:<15} fits: {', '.join(row['fits'])}")
        for sym, row in data["skills"].items():
            status = "identified" if row["identified"] else "NOT identified"
            fits = (
                ", ".join(row["fits"])
                if row["fits"] is not None
                else f"{row['identified_inputs']}/{row['inputs_total']} inputs"
            )
            print(f"  skill   {sym:<4} {status:<15} fits: {fits}")
        for cand in data["candidates"]:
            mark = "in G " if cand["identified"] else "NOT  "
            status = "" if cand["status"] == "exact" else f"[{cand['status']}] "
            print(f"  {mark} {cand['program']:<40} {status}{cand['reason']}")
    del spec


def _cmd_fit(args: argparse.Namespace) -> None:
    from hlsm.app.fitrun import run_fit

    progress = not args.quiet and not args.json
    overrides = parse_overrides(args.set)
    metrics = run_fit(args.design, args.out, data=args.data, progress=progress, resume=args.resume, overrides=overrides)
    if args.json:
        _print_json(metrics.summary() | {"out": str(args.out)}, indent=2)
        return
    rec, table = metrics.recovery, metrics.confusion
    print(f"fitted {metrics.traces:,} traces: best restart {metrics.best} of {len(metrics.restarts)}")
    print(
        f"  binding accuracy: skills {rec.skill_binding_accuracy:.0%}, "
        f"routings {rec.routing_binding_accuracy:.0%}; "
        f"matched table TV max {rec.matched_tv_max:.3f}"
    )
    free = [s for s, view in metrics.symbols.items() if not view.identified]
    print(f"  symbols not identified by the fit: {', '.join(free) or 'none'}")
    width = metrics.restarts[metrics.best].interval_width
    if width is not None:
        print(f"  scalable likelihood: the log-likelihood is certified to within {width:.3g} nats at the estimate")
    if table is not None:
        print(f"  candidates: VI and the exact checker agree on {table['agreement']:.0%} of {table['total']}")
    print(f"results: {args.out}/metrics.json")


def _cmd_reproduce(args: argparse.Namespace) -> None:
    from hlsm.app.reproduce import reproduce

    path, outcomes = reproduce(
        args.scale, only=args.only, force=args.force, runs=args.runs, docs=args.docs, backend=args.backend,
        address=args.address,
    )  # fmt: skip
    failed = [o.name for o in outcomes if o.status == "failed"]
    total = sum(o.wall_s for o in outcomes) / 60
    print(f"wrote {path} ({total:.1f} min of experiments{'; FAILED: ' + ', '.join(failed) if failed else ''})")
    if failed:
        raise SystemExit(1)


def _cmd_sweep(args: argparse.Namespace) -> None:
    from hlsm.app.sweep import load_grid, run_sweep

    section = load_grid(args.grid)
    overrides = {"backend": args.backend, "workers": args.workers, "address": args.address}
    section = replace(section, **{k: v for k, v in overrides.items() if v is not None})
    path, rows = run_sweep(section)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "cached", "failed")}
    print(f"{len(rows)} cells: {counts['done']} ran, {counts['cached']} already done, {counts['failed']} failed")
    for r in rows:
        if r["status"] == "failed":
            print(f"  cell {r['cell']} failed: {r['error']}")
    print(f"results: {path}")
    if counts["failed"]:
        raise HLSMError(f"{counts['failed']} of {len(rows)} cells failed (errors above and in {path}); fix and rerun")


def _cmd_quickstart(args: argparse.Namespace) -> None:
    from hlsm.app.quickstart import QuickstartConfig, run_quickstart

    config = QuickstartConfig(
        traces_per_split=args.traces_per_split, seed=args.seed, scale=args.scale, transformer=not args.no_transformer
    )
    report = run_quickstart(args.out, config)
    print(f"report: {report}")


def _cmd_examples_list(args: argparse.Namespace) -> None:
    from hlsm.examples import examples

    found = examples().values()
    if args.json:
        _print_json([{**asdict(e), "path": str(e.path)} for e in found], indent=2)
        return
    width = max(len(e.name) for e in found)
    for kind, title in (("design", "designs"), ("config", "training configs"), ("grid", "sweep grids")):
        print(f"{title}:")
        for e in (e for e in found if e.kind == kind):
            print(f"  {e.name:<{width}}  {textwrap.shorten(e.summary, 100 - width, placeholder=' ...')}")
    print("use one as example:NAME wherever a file is expected, e.g. `hlsm identify --design example:c2_interfaces`;")
    print("`hlsm examples show NAME` prints it, `hlsm examples copy NAME --to DIR` copies it to edit")


def _cmd_examples_show(args: argparse.Namespace) -> None:
    from hlsm.examples import example_path

    sys.stdout.write(example_path(args.name).read_text(encoding="utf-8"))


def _cmd_examples_copy(args: argparse.Namespace) -> None:
    from hlsm.examples import copy_examples

    for path in copy_examples(args.names, args.to, overwrite=args.overwrite):
        print(path)


def _cmd_train_sft(args: argparse.Namespace) -> None:
    from hlsm.lm.sft import train_sft
    from hlsm.lm.sft_config import SFTConfig

    config = SFTConfig.from_toml(args.config, parse_overrides(args.set))
    result = train_sft(config, args.out, resume=args.resume)
    if result.rank == 0:
        print(f"trained {result.step} steps; outputs in {result.out}")
        for name, acc in result.evaluation.items():
            print(f"  {name:<12} accuracy {acc['accuracy']:.3f} +- {acc['se']:.3f}  (n={acc['n']})")


def _cmd_train_rl(args: argparse.Namespace) -> None:
    from hlsm.lm.reinforce import train_rl
    from hlsm.lm.rl_config import RLConfig

    config = RLConfig.from_toml(args.config, parse_overrides(args.set))
    result = train_rl(config, args.init, args.out, resume=args.resume)
    if result.rank == 0:
        print(f"{result.updates} updates on {result.traces:,} sampled traces; outputs in {result.out}")
        if result.updates == 0:
            print(
                "  no update: in every sampled group all traces scored alike (all wrong, or all right), so the "
                "leave-one-out advantages were 0. The policy gives RL nothing to learn from: train SFT longer "
                "(the tiny configs are smoke tests of the path, not of learning), or raise the budget."
            )
        for name, acc in result.evaluation.items():
            print(f"  {name:<12} accuracy {acc['accuracy']:.3f} +- {acc['se']:.3f}  (n={acc['n']})")


def _evaluation_design(path: str, policy: Any) -> Any:
    """The support design of a ``[spec]`` / ``[design]`` TOML for a checkpoint's own library."""
    from hlsm.design import DesignConfig, make_design
    from hlsm.spec import Spec

    raw = load_toml(path)
    check_sections(raw, ("spec", "design"), f"'{path}'")
    if "spec" in raw and Spec.from_dict(dict(raw["spec"])) != policy.spec:
        raise ConfigError(
            f"the [spec] of '{path}' differs from the checkpoint's {policy.spec.to_dict()}; the model only "
            "reads its own library: drop [spec] or make it equal"
        )
    return make_design(policy.spec, DesignConfig.from_dict(raw.get("design", {})))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from hlsm.design import SupportDesign
    from hlsm.lm.policy import evaluate_checkpoint, load_policy
    from hlsm.lm.records import format_evaluation

    policy = load_policy(args.ckpt, what="--ckpt checkpoint")
    design: SupportDesign | None = _evaluation_design(args.design, policy) if args.design else None
    results = evaluate_checkpoint(policy, design, examples=args.examples, seed=args.seed, checker=not args.no_checker)
    if args.out:
        check_target(args.out)
        with writing(args.out, "results file"):
            results.save(args.out)
    print(f"{policy.kind} checkpoint {args.ckpt} (step {policy.step}); {args.examples} examples per split, greedy")
    print(format_evaluation(results.to_dict()))
    if args.out:
        print(f"results: {args.out}")


def _cmd_probe(args: argparse.Namespace) -> None:
    from hlsm.app.probe import run_probe
    from hlsm.lm.policy import load_policy

    policy = load_policy(args.ckpt, what="--ckpt checkpoint")
    design = _evaluation_design(args.design, policy) if args.design else None
    out = args.out or str(Path(args.ckpt).parent / "probe" if Path(args.ckpt).is_file() else Path(args.ckpt) / "probe")
    result = run_probe(
        policy,
        out,
        design=design,
        examples=args.examples,
        seed=args.seed,
        replicates=args.replicates,
        reference=args.reference,
    )
    if args.json:
        _print_json({k: result[k] for k in ("checkpoint", "traces", "records", "groups")} | {"out": out})
        return
    counts = f"{result['records']:,} steps of {result['traces']:,} traces"
    print(f"{policy.kind} checkpoint {args.ckpt} (step {policy.step}): {counts}, own skill: {args.reference}")
    for group, v in result["groups"].items():
        print(
            f"  {group:<6} {v['records']:>6} steps  entanglement {v['entanglement']:.3f} ± {v['entanglement_se']:.3f}"
            f"  unexplained {v['unexplained']:.3f} ± {v['unexplained_se']:.3f}"
        )
    subs = [b for b in result["bindings"] if b["substitution"]]
    print(f"  substitutions: {len(subs)} (symbol, context) pairs bound to another skill")
    print(f"results: {out}/probe.json, probe.md, bindings.png")


def _cmd_bench(args: argparse.Namespace) -> None:
    from hlsm.app.bench import run_benchmark

    kwargs: dict[str, Any] = {"progress": not args.json}
    for key in ("n", "device", "peak_tflops", "scale", "models", "size"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    result = run_benchmark(args.name, **kwargs)
    if args.json:
        _print_json(result)
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def _cmd_export(args: argparse.Namespace) -> None:
    from hlsm.app.export import export_design, load_export_design

    spec, design, fmt = load_export_design(args.design)
    summary = export_design(spec, design, args.out, args.format, fmt=fmt, inputs=args.inputs, seed=args.seed)
    print(f"wrote {args.out}/train.parquet ({sum(summary['train'].values()):,} RL prompts) and test.parquet")
    _print_json({"train": summary["train"], "test": summary["test"]})


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


EXAMPLES = """examples:
  hlsm quickstart --scale tiny                           the whole pipeline in small (seconds)
  hlsm identify --design example:c2_interfaces           which unseen programs a support determines
  hlsm fit --design example:fit_tiny --out runs/fit      the Bayesian view, with the checker beside it
  hlsm train sft --config example:sft_tiny --out runs/sft --set training.steps=60
  hlsm train rl --config example:rl_tiny --init runs/sft --out runs/rl
  hlsm probe --ckpt runs/rl                              which skill each symbol executes
  hlsm reproduce --scale cpu                             every experiment, then docs/results.md
  hlsm examples list                                     the shipped designs and configs

COMMAND --help describes each command; the README lists them all."""
"""The examples ``hlsm --help`` ends with."""


def _add_set(parser: argparse.ArgumentParser, example: str, note: str = "") -> None:
    """The ``--set KEY=VALUE`` option of a command that reads a config or design file."""
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help=f"change a value of the file for this run, e.g. --set {example} (repeatable{note})",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hlsm",
        description="Hierarchical latent selection models of reasoning traces.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from hlsm import __version__

    parser.add_argument("--version", action="version", version=f"hlsm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("modules", help="list the module library")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--alphabet", type=_positive, default=8, help="alphabet size A (default 8)")
    p.add_argument("--length", type=_positive, default=6, help="string length n (default 6)")
    p.set_defaults(func=_cmd_modules)

    p = sub.add_parser("simulate", help="sample a corpus of traces to JSONL")
    p.add_argument("--config", help="TOML file with [spec], [design] and [simulate] sections")
    _add_set(p, "design.n_sft=50", "; the flags below win")
    p.add_argument("--alphabet", type=_positive, help="alphabet size A")
    p.add_argument("--length", type=_positive, help="string length n")
    p.add_argument("--skills", help="comma-separated skill names (default: the 24 of the library)")
    p.add_argument("--routings", help="comma-separated routing names (default: the 10 of the library)")
    p.add_argument(
        "--depth",
        type=_positive,
        help="training depth of the design (deeper splits: +1, +2 unless the config sets them)",
    )
    p.add_argument("--splits", help="comma-separated splits to sample from: sft, rl, unseen, deeper")
    p.add_argument("--n", type=_positive, help="number of traces")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--exposure", help="full | answer | steps:1,3")
    p.add_argument("--epsilon", type=float, help="corruption rate in [0, 1]")
    p.add_argument("--out", help="output JSONL path")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("identify", help="which modules and unseen programs a design identifies")
    p.add_argument("--design", required=True, help="design TOML file, or example:NAME (see `hlsm examples list`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--class",
        dest="hypothesis_class",
        choices=("lib", "tab", "both"),
        default="both",
        help="hypothesis class: lib (symbols bind to library modules), tab (skills are any tables), both",
    )
    p.add_argument("--figure", help="write the support graph, coloured by identification, to this PNG")
    p.add_argument(
        "--compare", nargs="+", metavar="DESIGN",
        help="other regimes (design files, one library): a candidate x regime table under H-lib (H-tab with "
        "--class tab; and --figure: its chart)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_identify)

    p = sub.add_parser("fit", help="fit bindings and tables by MAP with restarts; compare with the checker")
    p.add_argument(
        "--design", required=True, help="design TOML file with optional [fit] and [nuts] sections, or example:NAME"
    )
    p.add_argument("--data", help="a JSONL corpus (hlsm simulate output) to fit instead of the design's own data")
    p.add_argument("--out", required=True, help="output folder (params.pt, metrics.json, figures)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue a killed fit from OUT/fit_state.pt")
    _add_set(p, "fit.steps=50")
    p.add_argument(
        "--json", action="store_true", help="print the summary (binding_accuracy, checker_agreement) as JSON"
    )
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("reproduce", help="run every experiment (hlsm.sims) and write docs/results.md (resumable)")
    p.add_argument("--scale", choices=SCALES, default="cpu", help="experiment scale (default cpu)")
    p.add_argument(
        "--only",
        nargs="+",
        help="run only these experiments (module names of hlsm.sims; finding2_absent_skill runs only when named)",
    )
    p.add_argument("--force", action="store_true", help="rerun experiments that already finished")
    p.add_argument("--runs", help="folder of the experiments' outputs (default runs/reproduce-SCALE)")
    p.add_argument(
        "--backend", choices=("local", "ray"), default="local",
        help="ray: send each stack of training runs to a Ray cluster as a task (pip install 'hlsm[ray]')",
    )  # fmt: skip
    p.add_argument("--address", default="", help="ray: the cluster address ('' starts Ray on this machine)")
    p.add_argument("--docs", help="folder for results.md and its figures (default docs)")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("sweep", help="run a grid of designs or training configs; one results table (resumable)")
    p.add_argument("--grid", required=True, help="grid TOML file ([sweep] and [grid]; see example:sweep_fit)")
    p.add_argument("--backend", choices=("local", "ray"), help="override [sweep] backend")
    p.add_argument("--workers", type=_positive, help="override [sweep] workers (local backend)")
    p.add_argument("--address", help="override [sweep] address (ray backend; '' starts Ray locally)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("quickstart", help="the main job on the default library (writes runs/quickstart/)")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    p.add_argument("--traces-per-split", type=_positive, default=5000, help="traces per split (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scale",
        choices=("tiny", "cpu"),
        default="cpu",
        help="transformer and fit sizes (default cpu: about 4 minutes)",
    )
    p.add_argument("--no-transformer", action="store_true", help="skip the SFT / RL / evaluate step")
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("examples", help="the example designs and configs that ship with hlsm: list, show, copy")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="name and describe every example (use as example:NAME)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=_cmd_examples_list)
    q = actions.add_parser("show", help="print an example's TOML")
    q.add_argument("name", help="example name (example:NAME also accepted)")
    q.set_defaults(func=_cmd_examples_show)
    q = actions.add_parser("copy", help="copy examples into a folder, to read and edit")
    q.add_argument("names", nargs="*", help="example names (default: all of them)")
    q.add_argument("--to", required=True, help="destination folder (made if missing)")
    q.add_argument("--overwrite", action="store_true", help="replace files of the same name")
    q.set_defaults(func=_cmd_examples_copy)

    p = sub.add_parser("train", help="train the transformer: sft, rl")
    stages = p.add_subparsers(dest="stage", required=True, metavar="STAGE")
    q = stages.add_parser("sft", help="supervised training on golden traces; resumable, torchrun-ready")
    q.add_argument("--config", required=True, help="TOML file (see example:sft_cpu and hlsm.lm.sft_config)")
    _add_set(q, "training.steps=100 --set training.seed=3")
    q.add_argument("--out", help="output folder (default: [training] out of the config)")
    q.add_argument("--resume", action="store_true", help="continue the run from OUT/checkpoint.pt")
    q.set_defaults(func=_cmd_train_sft)
    q = stages.add_parser("rl", help="REINFORCE from an SFT checkpoint; resumable, torchrun-ready")
    q.add_argument("--config", required=True, help="TOML file (see example:rl_cpu and hlsm.lm.rl_config)")
    _add_set(q, "training.steps=100 --set training.seed=3")
    q.add_argument("--init", required=True, help="the SFT checkpoint.pt (or its run folder) to start from")
    q.add_argument("--out", help="output folder (default: [training] out of the config)")
    q.add_argument("--resume", action="store_true", help="continue the run from OUT/checkpoint.pt")
    q.set_defaults(func=_cmd_train_rl)

    p = sub.add_parser("evaluate", help="accuracy of a trained transformer on every split of a design")
    p.add_argument("--ckpt", required=True, help="checkpoint.pt (or run folder) of `hlsm train sft` or `train rl`")
    p.add_argument("--design", help="TOML with [spec] and [design] (default: the checkpoint's own design)")
    p.add_argument("--examples", type=_positive, default=512, help="examples per split (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the examples (default 0; equal seeds pair models)")
    p.add_argument("--no-checker", action="store_true", help="skip the identified / not identified split")
    p.add_argument("--out", help="write the results (per-example outcomes included) to this JSON file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("probe", help="which library skill each symbol of a transformer executes, per context")
    p.add_argument("--ckpt", required=True, help="checkpoint.pt (or run folder) of `hlsm train sft` or `train rl`")
    p.add_argument("--design", help="TOML with [spec] and [design] (default: the checkpoint's own design)")
    p.add_argument("--examples", type=_positive, default=256, help="traces per split and mode (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompts and samples (default 0)")
    p.add_argument("--replicates", type=_positive, default=30, help="bootstrap replicates (default 30)")
    p.add_argument(
        "--reference",
        choices=("true", "majority"),
        default="true",
        help="a symbol's own skill: the task's (default) or its context-free majority binding",
    )
    p.add_argument("--out", help="output folder (default: probe/ beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print the entanglement summary as JSON")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("bench", help="run a benchmark: simulate, identify, sample, train, rl, fit")
    p.add_argument("name", help="benchmark name (simulate, identify, sample, train, rl, fit)")
    p.add_argument("--json", action="store_true", help="print one JSON object with a 'ratio' field")
    p.add_argument(
        "--n",
        type=_positive,
        help="problem size (simulate: traces, default 100000; sample: prompts, train: batch, 64; rl: prompts, 32)",
    )
    p.add_argument("--device", help="sample, train, rl: cpu (default) or cuda")
    p.add_argument(
        "--scale",
        help="train, rl: the preset's model and task (tiny, cpu, gpu); fit: tiny (default) or default library",
    )
    p.add_argument(
        "--models", type=_positive, help="train, rl: K models stacked as one computation, against K one at a time"
    )
    p.add_argument("--size", help="train, rl: a model of the size ladder (0.2M, 0.6M, 5M, 25M) instead of the scale's")
    p.add_argument(
        "--peak-tflops", type=float, help="train: the device's peak TFLOP/s, to report model FLOPs utilisation"
    )
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("export", help="write a design's RL and evaluation prompts as parquet for verl or TRL")
    p.add_argument("--design", required=True, help="TOML with [spec], [design] and optional [format], or example:NAME")
    p.add_argument("--format", required=True, choices=("verl", "trl"), help="column layout of the trainer")
    p.add_argument("--out", required=True, help="output folder (train.parquet, test.parquet, export.json)")
    p.add_argument("--inputs", type=_positive, default=1, help="random inputs x0 per program (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.set_defaults(func=_cmd_export)
    _add_plugin_option(parser)
    return parser


def _add_plugin_option(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command ``--plugin FILE`` (repeatable): Python files that register custom modules."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    _add_plugin_option(child)
                else:
                    child.add_argument(
                        "--plugin",
                        action="append",
                        default=[],
                        metavar="FILE",
                        help="a Python file that registers custom skills or routings (repeatable)",
                    )


PATH_OPTIONS = ("out", "design", "config", "ckpt", "data", "init", "grid", "figure", "runs", "docs", "to")
"""Options that name a file or folder: an empty or blank value is refused before any work."""


EXIT_INTERRUPTED = 130
"""The exit code after Ctrl-C (128 + SIGINT, as a shell reports it)."""

INTERRUPTED = {
    "train": "the last checkpoint is kept; the same command with --resume continues from it",
    "fit": "the fit's checkpoint (fit_state.pt) is kept; the same command with --resume continues from it",
    "reproduce": "finished experiments are kept; the same command continues with the next one",
    "sweep": "finished cells are kept; the same command runs the others",
    "": "no partial output file was left (results are written whole or not at all)",
}
"""What Ctrl-C leaves, per command, in the one line printed instead of a traceback."""


def _check_paths(args: argparse.Namespace) -> None:
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise HLSMError(f"--{name} is empty; give a file or folder name")


_JSON_OUT: list[TextIO] = []
"""Where :func:`_print_json` writes: the real stdout while a ``--json`` command runs with everything
else it prints (a plugin's prints, progress) sent to stderr."""


def _print_json(value: Any, indent: int | None = None) -> None:
    print(json.dumps(value, indent=indent), file=_JSON_OUT[-1] if _JSON_OUT else sys.stdout)


def _run(args: argparse.Namespace) -> None:
    _check_paths(args)
    from hlsm.plugins import load_plugins

    load_plugins(getattr(args, "plugin", []))
    args.func(args)


SILENCE_SLIPS = "HLSM_IGNORE_SLIPS"
"""The environment variable that silences :class:`hlsm.errors.SlipWarning` on the command line."""


def _show_slip(command: str) -> Any:
    """A ``warnings.showwarning`` that prints a :class:`SlipWarning` as one line naming the command."""
    original = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, SlipWarning):
            silence = f"{SILENCE_SLIPS}=1 silences it"
            print(f"hlsm {command}: warning: {message} ({silence})", file=sys.stderr)
        else:
            original(message, category, *args, **kwargs)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hlsm`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_slip(args.command)
        if os.environ.get(SILENCE_SLIPS):
            warnings.simplefilter("ignore", SlipWarning)
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "json", False):  # stdout carries the JSON alone
            _JSON_OUT.append(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    _run(args)
            finally:
                _JSON_OUT.pop()
        else:
            _run(args)
    except HLSMError as err:
        print(f"hlsm {args.command}: error: {shorten(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as err:
        from hlsm.io import REASONS

        target = f" '{err.filename}'" if err.filename else ""
        reason = REASONS.get(err.errno or 0, err.strerror or str(err))
        fix = "; check the path and its permissions" if err.errno in (errno.EACCES, errno.EPERM, errno.ENOENT) else ""
        print(f"hlsm {args.command}: error: cannot write or read{target}: {reason}{fix}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"hlsm {args.command}: interrupted; {INTERRUPTED.get(args.command, INTERRUPTED[''])}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
