"""The ``hlsm`` command.

Subcommands: ``modules``, ``simulate``, ``identify``, ``fit``, ``quickstart``, ``examples``,
``train sft``, ``train rl``, ``evaluate``, ``probe``, ``reproduce``, ``sweep``, ``export``,
``bench``. The design, config and grid options read ``example:NAME`` as the packaged example of
that name (:mod:`hlsm.examples`; ``hlsm examples list``). Bad
input (an unknown module, a malformed config, an impossible design, an unwritable output path)
prints one message naming the input and the fix, and exits with code 2.

The argument parser, the exit codes and the error handling; the handlers are in
:mod:`hlsm.app.commands`, each importing its job on first use, so ``hlsm --help`` imports no torch.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from hlsm.app import commands
from hlsm.errors import HLSMError, SlipWarning, shorten
from hlsm.scales import SCALES

EXIT_BAD_INPUT = 2


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


COMMAND_EXAMPLES = {
    "modules": "hlsm modules --alphabet 4 --length 3",
    "simulate": "hlsm simulate --n 2000 --set 'design.held_out_pairs=[\"sort>reverse\"]' --out runs/c.jsonl",
    "identify": "hlsm identify --design example:c4_rl_inside --compare example:c5_rl_outside",
    "fit": "hlsm fit --design example:fit_tiny --out runs/fit --set fit.steps=50",
    "reproduce": "hlsm reproduce --scale tiny --only finding1_rl_data",
    "sweep": "hlsm sweep --grid example:sweep_fit",
    "quickstart": "hlsm quickstart --scale tiny",
    "examples list": "hlsm examples list",
    "examples show": "hlsm examples show c2_interfaces",
    "examples copy": "hlsm examples copy c2_interfaces sft_tiny --to mine",
    "train sft": "hlsm train sft --config example:sft_tiny --out runs/sft --set training.steps=60",
    "train rl": "hlsm train rl --config example:rl_tiny --init runs/sft --out runs/rl",
    "evaluate": "hlsm evaluate --ckpt runs/rl --examples 64 --out runs/rl/eval.json",
    "probe": "hlsm probe --ckpt runs/rl --out runs/probe",
    "bench": "hlsm bench rl --models 8 --json",
    "export": "hlsm export --design example:c2_interfaces --format trl --out runs/export",
}
"""One example per subcommand, shown at the end of ``hlsm COMMAND --help`` (tested to parse)."""


def _add_examples(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """End every subcommand's ``--help`` with its example of :data:`COMMAND_EXAMPLES`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                command = f"{prefix}{name}"
                if command in COMMAND_EXAMPLES:
                    child.epilog = f"example:\n  {COMMAND_EXAMPLES[command]}"
                    child.formatter_class = argparse.RawDescriptionHelpFormatter
                _add_examples(child, f"{command} ")


def _add_tensorboard(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--tensorboard`` option (:mod:`hlsm.tracking`)."""
    parser.add_argument(
        "--tensorboard", action="store_true",
        help=f"also log {what} to OUT/tensorboard/ (needs pip install 'hlsm[tensorboard]')",
    )  # fmt: skip


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
    p.set_defaults(func=commands.cmd_modules)

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
    p.set_defaults(func=commands.cmd_simulate)

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
    _add_set(p, "data.inputs=64")
    p.add_argument(
        "--compare", nargs="+", metavar="DESIGN",
        help="other regimes (design files, one library): a candidate x regime table under H-lib (H-tab with "
        "--class tab; and --figure: its chart)",
    )  # fmt: skip
    p.set_defaults(func=commands.cmd_identify)

    p = sub.add_parser("fit", help="fit bindings and tables by MAP with restarts; compare with the checker")
    p.add_argument(
        "--design", required=True, help="design TOML file with optional [fit] and [nuts] sections, or example:NAME"
    )
    p.add_argument("--data", help="a JSONL corpus (hlsm simulate output) to fit instead of the design's own data")
    p.add_argument("--out", required=True, help="output folder (params.pt, metrics.json, figures)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue a killed fit from OUT/fit_state.pt")
    _add_set(p, "fit.steps=50")
    _add_tensorboard(p, "each restart's loss per step")
    p.add_argument(
        "--json", action="store_true", help="print the summary (binding_accuracy, checker_agreement) as JSON"
    )
    p.set_defaults(func=commands.cmd_fit)

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
    p.set_defaults(func=commands.cmd_reproduce)

    p = sub.add_parser("sweep", help="run a grid of designs or training configs; one results table (resumable)")
    p.add_argument("--grid", required=True, help="grid TOML file ([sweep] and [grid]; see example:sweep_fit)")
    p.add_argument("--backend", choices=("local", "ray"), help="override [sweep] backend")
    p.add_argument("--workers", type=_positive, help="override [sweep] workers (local backend)")
    p.add_argument("--address", help="override [sweep] address (ray backend; '' starts Ray locally)")
    _add_set(p, "'grid.\"fit.seed\"=[0, 1]'")
    p.set_defaults(func=commands.cmd_sweep)

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
    p.set_defaults(func=commands.cmd_quickstart)

    p = sub.add_parser("examples", help="the example designs and configs that ship with hlsm: list, show, copy")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="name and describe every example (use as example:NAME)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=commands.cmd_examples_list)
    q = actions.add_parser("show", help="print an example's TOML")
    q.add_argument("name", help="example name (example:NAME also accepted)")
    q.set_defaults(func=commands.cmd_examples_show)
    q = actions.add_parser("copy", help="copy examples into a folder, to read and edit")
    q.add_argument("names", nargs="*", help="example names (default: all of them)")
    q.add_argument("--to", required=True, help="destination folder (made if missing)")
    q.add_argument("--overwrite", action="store_true", help="replace files of the same name")
    q.set_defaults(func=commands.cmd_examples_copy)

    p = sub.add_parser("train", help="train the transformer: sft, rl")
    stages = p.add_subparsers(dest="stage", required=True, metavar="STAGE")
    q = stages.add_parser("sft", help="supervised training on golden traces; resumable, torchrun-ready")
    q.add_argument("--config", required=True, help="TOML file (see example:sft_cpu and hlsm.lm.sft_config)")
    _add_set(q, "training.steps=100 --set training.seed=3")
    q.add_argument("--out", help="output folder (default: [training] out of the config)")
    q.add_argument("--resume", action="store_true", help="continue the run from OUT/checkpoint.pt")
    _add_tensorboard(q, "the numbers of metrics.jsonl")
    q.set_defaults(func=commands.cmd_train_sft)
    q = stages.add_parser("rl", help="REINFORCE from an SFT checkpoint; resumable, torchrun-ready")
    q.add_argument("--config", required=True, help="TOML file (see example:rl_cpu and hlsm.lm.rl_config)")
    _add_set(q, "training.steps=100 --set training.seed=3")
    q.add_argument("--init", required=True, help="the SFT checkpoint.pt (or its run folder) to start from")
    q.add_argument("--out", help="output folder (default: [training] out of the config)")
    q.add_argument("--resume", action="store_true", help="continue the run from OUT/checkpoint.pt")
    _add_tensorboard(q, "the numbers of metrics.jsonl")
    q.set_defaults(func=commands.cmd_train_rl)

    p = sub.add_parser("evaluate", help="accuracy of a trained transformer on every split of a design")
    p.add_argument("--ckpt", required=True, help="checkpoint.pt (or run folder) of `hlsm train sft` or `train rl`")
    p.add_argument("--design", help="TOML with [spec] and [design] (default: the checkpoint's own design)")
    p.add_argument("--examples", type=_positive, default=512, help="examples per split (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of the examples (default 0; equal seeds pair models)")
    p.add_argument("--no-checker", action="store_true", help="skip the identified / not identified split")
    p.add_argument("--out", help="write the results (per-example outcomes included) to this JSON file")
    p.set_defaults(func=commands.cmd_evaluate)

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
    p.set_defaults(func=commands.cmd_probe)

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
    p.set_defaults(func=commands.cmd_bench)

    p = sub.add_parser("export", help="write a design's RL and evaluation prompts as parquet for verl or TRL")
    p.add_argument("--design", required=True, help="TOML with [spec], [design] and optional [format], or example:NAME")
    p.add_argument("--format", required=True, choices=("verl", "trl"), help="column layout of the trainer")
    p.add_argument("--out", required=True, help="output folder (train.parquet, test.parquet, export.json)")
    p.add_argument("--inputs", type=_positive, default=1, help="random inputs x0 per program (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    _add_set(p, "design.n_rl=50")
    p.set_defaults(func=commands.cmd_export)
    _add_plugin_option(parser)
    _add_examples(parser)
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
            commands.JSON_OUT.append(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    _run(args)
            finally:
                commands.JSON_OUT.pop()
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
