"""The ``neurflow`` command line: a thin click group.

Each subcommand lives in the module that drives it and is imported only when it runs
(click's "Further Deferring Imports" pattern), so ``neurflow --help`` and
``neurflow query --list`` start without importing torch.
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute" of a click command; imported on first use.
_COMMANDS: dict[str, str] = {
    "compute": "neurflow.ingest.cli.compute:compute",
    "load": "neurflow.ingest.cli.load:load",
    "ingest": "neurflow.ingest.cli.ingest:ingest",
    "link": "neurflow.ingest.cli.link:link",
    "export": "neurflow.ingest.cli.export:export",
    "demo": "neurflow.ingest.cli.demo:demo",
    "db": "neurflow.ingest.cli.db:db",
    "query": "neurflow.ingest.cli.query:query",
    "debug": "neurflow.ingest.cli.debug:debug",
    "evaluate": "neurflow.ingest.cli.evaluate:evaluate",
    "label": "neurflow.ingest.cli.label:label",
    "serve": "neurflow.ingest.cli.serve:serve",
    "report": "neurflow.ingest.cli.report:report",
}

_HELP: dict[str, str] = {
    "compute": "Compute circuit artifacts (no database).",
    "load": "Load existing circuit artifacts into the graph.",
    "ingest": "Compute circuits, then load them into the graph (compute + load + link).",
    "link": "Build the cross-class concept atlas from the artifacts and write it.",
    "export": "Write circuit artifacts as CSV files for neo4j-admin bulk import (no database).",
    "demo": "The offline main job: demo world + model, ingest all classes, show queries.",
    "db": "Start, stop or inspect the embedded Bolt database.",
    "query": "Run a named Cypher query from the query library.",
    "debug": "Score neuron groups for bias (image debugging) and write the evidence.",
    "evaluate": "Faithfulness experiments (optimality, fidelity, correlation).",
    "label": "Describe neuron groups and their relations in words (annotations or a vision LLM).",
    "serve": "Browse circuits, groups and their patches in a local web explorer.",
    "report": "Write one self-contained HTML report of some classes' circuits.",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name and module_name.startswith(exc.name):
                return _unavailable(name)
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text without importing every subcommand module.
        rows = [(name, _HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help=_HELP.get(name, ""))
    def _cmd() -> None:
        raise click.ClickException(f"'neurflow {name}' is not available in this build")

    return _cmd


# Subcommands that run a model: glibc's allocator is tuned for them (neurflow.allocator;
# the measured gain is in the README).
MODEL_COMMANDS = frozenset({"compute", "ingest", "demo", "debug", "evaluate"})


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """NeurFlow: neuron groups and concept circuits of image classifiers, in a graph."""
    if ctx.invoked_subcommand in MODEL_COMMANDS:
        from neurflow.allocator import tune_cpu_allocator

        tune_cpu_allocator()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
