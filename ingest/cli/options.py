"""The option sets every command shares, declared once, and the error handling of the CLI.

* :func:`model_options`: the model, its weights, the device and the preprocessing. On
  ``compute``/``ingest`` they describe what to build; on commands that work on existing
  classes (``debug``, ``evaluate``) every one of them defaults to what the artifact's
  ``run.json`` recorded (:mod:`neurflow.ingest.session`), and a given value overrides it.
* :func:`circuit_options`: the circuit hyper-parameters, with defaults and choices read
  from :class:`neurflow.circuit.CircuitConfig` and the core's registries.
* :func:`db_options`: the graph database (``--uri/--user/--password/--database``).
* :func:`handle_errors`: a :class:`neurflow.errors.NeurflowError` becomes ``Error: ...`` on
  stderr and the error's exit code (the one mapping of errors to exit codes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from neurflow.errors import NeurflowError

__all__ = [
    "db_options",
    "handle_errors",
    "parse_floats",
    "connect_from_options",
    "echo_err",
    "model_options",
    "model_options_from",
    "circuit_options",
    "circuit_config_from",
    "artifacts_option",
    "quiet_option",
]

F = Callable[..., Any]


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def handle_errors(fn: F) -> F:
    """Turn NeurflowError into ``Error: <message>`` on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NeurflowError as exc:
            echo_err(f"Error: {exc}")
            raise SystemExit(exc.exit_code) from None

    return wrapper


def _apply(fn: F, opts: Sequence[Callable[[Any], Any]]) -> F:
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def db_options(fn: F) -> F:
    """``--uri/--user/--password/--database``, also from NEURFLOW_* environment variables.

    With no URI, the embedded database is started (or reused) and its credentials are used.
    """
    return _apply(
        fn,
        [
            click.option("--uri", envvar="NEURFLOW_URI", default=None, help="Bolt URI of a Neo4j 5 server [env NEURFLOW_URI]; default: the embedded database."),
            click.option("--user", envvar="NEURFLOW_USER", default=None, help="User name [env NEURFLOW_USER]."),
            click.option("--password", envvar="NEURFLOW_PASSWORD", default=None, help="Password [env NEURFLOW_PASSWORD]; never logged."),
            click.option("--database", envvar="NEURFLOW_DATABASE", default=None, help="Database name [env NEURFLOW_DATABASE]."),
        ],
    )


def connect_from_options(uri: str | None, user: str | None, password: str | None, database: str | None):
    """Open a connection (see :func:`neurflow.ingest.connection.connect`)."""
    from ..connection import connect

    return connect(uri, user, password, database)


def parse_floats(value: str | None, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got '{value}'", param_hint=name) from None


def quiet_option(fn: F) -> F:
    return click.option("--quiet", is_flag=True, help="No progress bars.")(fn)


def artifacts_option(fn: F) -> F:
    """``--out``: the artifact directory (also NEURFLOW_ARTIFACTS). ``None`` when not given,
    so that commands on existing classes can fall back to the folders the graph records."""
    return click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=None,
        envvar="NEURFLOW_ARTIFACTS",
        help="Artifact directory [env NEURFLOW_ARTIFACTS; default: artifacts].",
    )(fn)


def model_options(*, default_model: str | None) -> Callable[[F], F]:
    """The model, weights, device and preprocessing options.

    Args:
        default_model: ``--model``'s default (``resnet50`` for compute); ``None`` on commands
            that take the model from the artifact's provenance.
    """
    from_artifact = default_model is None
    recorded = " (default: as recorded in the artifact's run.json)" if from_artifact else ""

    def decorate(fn: F) -> F:
        return _apply(
            fn,
            [
                click.option(
                    "--model",
                    default=default_model,
                    show_default=not from_artifact,
                    help="A registered model name: a torchvision classification model, 'demo', or path/to/file.py:factory." + recorded,
                ),
                click.option("--weights", default=None, help="torchvision weights name (IMAGENET1K_V2, DEFAULT) or a state_dict file. Downloads only when named." + recorded),
                click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
                click.option("--input-size", type=int, default=None, help="Model input side (default: the weights' or 224)." + recorded),
                click.option(
                    "--resize",
                    default=None,
                    help="How an image becomes a model input: shorter:N (resize the shorter side to N, then centre-crop "
                    "--input-size; the default, N = input-size/0.875 or the weights' own), exact (resize to the input size, "
                    "no crop), none (centre-crop only: for images already prepared at the input size)." + recorded,
                ),
                click.option("--mean", default=None, help="Normalisation mean, e.g. 0.485,0.456,0.406." + recorded),
                click.option("--std", default=None, help="Normalisation std, e.g. 0.229,0.224,0.225." + recorded),
                click.option("--no-normalize", is_flag=True, default=None, help="Feed [0,1] pixels (models that normalise inside forward)."),
                click.option("--demo-root", type=click.Path(path_type=Path), default=None, help="Where the demo model lives (--model demo) [default: .neurflow/demo]." + recorded),
            ],
        )

    return decorate


def model_options_from(kw: dict[str, Any]):
    """Pop the :func:`model_options` values out of a command's keyword arguments.

    Returns:
        A :class:`neurflow.ingest.session.ModelOptions`; fields the user left out are None.
    """
    from ..session import ModelOptions

    return ModelOptions(
        model=kw.pop("model"),
        weights=kw.pop("weights"),
        device=kw.pop("device"),
        input_size=kw.pop("input_size"),
        resize=kw.pop("resize"),
        mean=parse_floats(kw.pop("mean"), "--mean"),
        std=parse_floats(kw.pop("std"), "--std"),
        normalize=False if kw.pop("no_normalize") else None,
        demo_root=kw.pop("demo_root"),
    )


# CircuitConfig field -> (option name, help). Defaults and choices come from the dataclass
# and the core's registries, so they are written nowhere else.
_CIRCUIT_HELP: dict[str, tuple[str, str]] = {
    "tau": ("--tau", "Core concept neurons per target (Definition 3)."),
    "k": ("--k", "Top patches per neuron concept (Definition 1)."),
    "steps": ("--steps", "Integrated-gradients steps N (Eq. 2)."),
    "method": ("--method", "IG quadrature; riemann_right is Eq. 2 verbatim."),
    "aggregate": ("--aggregate", "Ranking of core neurons: Eq. 2, or the authors' mean |score|."),
    "max_semantic_groups": ("--max-semantic-groups", "Upper bound of the silhouette search for semantic groups."),
    "max_neuron_groups": ("--max-neuron-groups", "Upper bound of the silhouette search for neuron groups."),
    "batch_size": ("--batch-size", "Patches per forward pass."),
    "ig_batch": ("--ig-batch", "Interpolated inputs per IG forward pass."),
    "precision": ("--precision", "Arithmetic of the activation pass that ranks patches (bfloat16: faster on bf16 hardware)."),
    "ig_precision": ("--ig-precision", "Arithmetic of integrated gradients: fp32, or on GPUs tf32 (TF32 matmuls) or bf16 (autocast); benchmarks/gpu_check.sh checks their core sets against fp32."),
    "map_cache_mb": ("--map-cache-mb", "Memory for lower-layer feature maps kept for IG (0 = recompute)."),
}


def _circuit_choices() -> dict[str, tuple[str, ...]]:
    from neurflow import circuit
    from neurflow.attribution import IG_PRECISIONS, QUADRATURES

    return {"method": tuple(QUADRATURES), "aggregate": tuple(circuit.AGGREGATES), "precision": tuple(circuit.PRECISIONS), "ig_precision": tuple(IG_PRECISIONS)}


def circuit_options(fn: F) -> F:
    """One option per tunable :class:`~neurflow.circuit.CircuitConfig` field."""
    from neurflow.circuit import CircuitConfig

    choices = _circuit_choices()
    opts = []
    for f in fields(CircuitConfig):
        if f.name not in _CIRCUIT_HELP:
            continue
        name, help_ = _CIRCUIT_HELP[f.name]
        kind: Any = click.Choice(choices[f.name]) if f.name in choices else type(f.default)
        opts.append(click.option(name, f.name, type=kind, default=f.default, show_default=True, help=help_))
    return _apply(fn, opts)


def circuit_config_from(kw: dict[str, Any]):
    """Pop the :func:`circuit_options` values and build the config (bad values: InputError)."""
    from neurflow.circuit import CircuitConfig
    from neurflow.errors import InputError

    values = {f.name: kw.pop(f.name) for f in fields(CircuitConfig) if f.name in _CIRCUIT_HELP and f.name in kw}
    try:
        return CircuitConfig(**values)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
