"""``simtune ui``: the MLflow UI on the store of a folder of sweeps, with links to the newest sweep's views."""

from __future__ import annotations

import argparse

from simtune.commands.common import storage_folder
from simtune.tracking.naming import UI_PORT


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "ui", help="open the sweeps' MLflow store in MLflow's UI (this environment's mlflow); Ctrl-C stops it",
        description="Runs `mlflow ui` with simtune's own Python on the store the sweeps of --storage write to and "
                    "prints the links to the newest sweep's views: one row per configuration (mean ± std over "
                    "seeds), and every trial charted against the swept params.")
    parser.add_argument("--storage", default=None, help="folder of sweeps (default ./sweeps)")
    parser.add_argument("--port", type=int, default=UI_PORT, help=f"port on 127.0.0.1 (default {UI_PORT})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simtune.tracking.ui import serve, ui_target

    return serve(ui_target(storage_folder(args.storage)), args.port,
                 say=lambda text: print(text, flush=True))
