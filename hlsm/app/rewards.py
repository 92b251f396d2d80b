"""Rewards for LLM trainers: exact match of the final answer of a generated trace.

The prompts written by :mod:`hlsm.app.export` ask the model to end its answer with one line holding
the trace's continuation, ``> x_1 > ... > x_L`` (or the whole trace ``x_0 | symbols > x_1 > ... >
x_L``). The reward takes the last non-empty line of the completion (surrounding backticks and
spaces stripped; any reasoning before it is ignored), puts the prompt's ``x_0 | symbols`` in front
and parses it with the strict parser :func:`hlsm.traces.parse` -- the same check as the
transformer's reward (:func:`hlsm.lm.data.parse_generation`): a line that does not parse as a full
trace of the prompt's program, or that hides a state with ``?``, is *malformed* and scores 0. A
well-formed trace scores 1 iff its last state equals the ground truth ``x_L``.

Two entry points with the trainers' signatures:

- verl (``custom_reward_function.name=compute_score``):
  ``compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float``;
- TRL (``GRPOTrainer(reward_funcs=[hlsm_reward])``):
  ``hlsm_reward(completions, ground_truth, **kwargs) -> list[float]``, completions as strings or
  as lists of chat messages.

Both read the task (spec, task format and trace prompt, a JSON string) from the row's ``hlsm``
field: ``extra_info["hlsm"]`` (verl) or the ``hlsm`` column (TRL). Without it, the strict parse is
impossible and the reward falls back to comparing the last ``>``-separated entry of the last line
with the ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

from hlsm.errors import HLSMError
from hlsm.lm.data import TaskFormat
from hlsm.spec import Spec
from hlsm.traces import HIDDEN, STEP_SEP, TraceFormatError, parse

Verdict = Literal["correct", "wrong", "malformed"]


@lru_cache(maxsize=64)
def _task(task_json: str) -> tuple[Spec, TaskFormat, str]:
    task = json.loads(task_json)
    return Spec.from_dict(task["spec"]), TaskFormat(**task["format"]), task["prompt"]


def answer_line(completion: str) -> str:
    """The last non-empty line of ``completion``, stripped of spaces and surrounding backticks."""
    lines = [line.strip().strip("`").strip() for line in completion.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""


def judge(completion: str, ground_truth: str, task: str | None = None) -> Verdict:
    """Whether a completion's trace is correct, wrong or malformed.

    Parameters
    ----------
    completion
        The model's text; its last non-empty line must be ``> x_1 > ... > x_L`` or the full trace.
    ground_truth
        The true final state ``x_L`` as letters.
    task
        The row's ``hlsm`` JSON (spec, format, trace prompt), written by :mod:`hlsm.app.export`; None:
        compare the last ``>``-separated entry only (no strict parse).
    """
    line = answer_line(completion)
    if task is None:
        if STEP_SEP not in line:
            return "malformed"
        answer = line.rsplit(STEP_SEP, 1)[1].strip()
        if not answer or answer == HIDDEN or " " in answer:
            return "malformed"
        return "correct" if answer == ground_truth else "wrong"
    spec, fmt, prompt = _task(task)
    if line.startswith(prompt + " "):
        line = line[len(prompt) :].strip()
    if not line.startswith(STEP_SEP):
        return "malformed"
    try:
        trace = parse(spec, f"{prompt} {line}", slots=fmt.slots, echo=fmt.echo)
    except TraceFormatError:
        return "malformed"
    if trace.answer is None or any(state is None for state in trace.states):
        return "malformed"
    return "correct" if spec.render_state(trace.answer) == ground_truth else "wrong"


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """A completion as text: a string, or the content of the last message of a chat completion."""
    if isinstance(completion, str):
        return completion
    messages = list(completion)
    if not messages:
        return ""
    content = messages[-1].get("content", "")
    return content if isinstance(content, str) else ""


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> float:
    """verl's custom reward: 1.0 if the completion's trace ends in ``ground_truth``, else 0.0.

    ``extra_info["hlsm"]`` (written by ``hlsm export --format verl``) enables the strict parse;
    ``data_source`` is not used. Other keywords (verl passes ``reward_router_address`` and the reward
    model's tokenizer when a reward model is enabled, and ``[reward] reward_kwargs``) are ignored.
    """
    del data_source, kwargs
    task = None if extra_info is None else extra_info.get("hlsm")
    return float(judge(solution_str, ground_truth, task) == "correct")


def hlsm_reward(
    completions: Sequence[str | Sequence[Mapping[str, Any]]],
    ground_truth: Sequence[str],
    hlsm: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[float]:
    """TRL's reward function: one 0/1 reward per completion (see the module docstring).

    ``ground_truth`` and ``hlsm`` are the dataset columns of ``hlsm export --format trl``, which
    ``GRPOTrainer`` passes as keyword arguments, one entry per completion; other columns are
    ignored.
    """
    del kwargs
    if len(ground_truth) != len(completions) or (hlsm is not None and len(hlsm) != len(completions)):
        raise HLSMError(
            f"hlsm_reward got {len(completions)} completions but {len(ground_truth)} ground truths; pass the "
            "dataset's columns unchanged"
        )
    tasks: Sequence[str | None] = [None] * len(completions) if hlsm is None else hlsm
    return [
        float(judge(completion_text(c), g, t) == "correct")
        for c, g, t in zip(completions, ground_truth, tasks, strict=True)
    ]
