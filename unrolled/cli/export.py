"""`unrolled export` (a run to a folder of graphs) and `unrolled run` (an exported folder on ONNX Runtime).

    unrolled export RUN [--format onnx|torchscript] [--out DIR] [--quantize int8]
    unrolled run EXPORTED [INPUT ...] [the application's predict options]

`run` is a command of its own rather than ``APP predict --runtime onnx``: the
exported folder names its application in its manifest, so the command needs no
application name and reads that application's own predict flags (the same
dataclass ``unrolled APP predict`` reads, `unrolled.options`); inputs are read
and results printed by the application's own functions. The predictions come
from `unrolled.runtime` (ONNX Runtime, NumPy decoding), never from torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unrolled.options import add_flags, apply_flags


def add_export_commands(commands: Any) -> None:
    """The `export` and `run` commands."""
    from unrolled.runtime.bundle import GRAPH_FORMATS

    export = commands.add_parser(
        "export", help="export a trained run (any application) to ONNX or TorchScript",
        description="Export a run: its graphs (the decoder step and the encoder, batch and lengths dynamic), its "
                    "vocabularies and settings, and a manifest with the SHA-256 of every file, in one folder "
                    "written atomically. `unrolled run` (or unrolled.runtime) runs an ONNX export without torch.")
    export.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    export.add_argument("--format", default="onnx", metavar="FORMAT",
                        help=f"graph format: {' or '.join(GRAPH_FORMATS)} (default: onnx)")
    export.add_argument("--out", metavar="DIR", help="the folder to write (default: RUN-FORMAT beside the run)")
    export.add_argument("--quantize", metavar="KIND", help="int8: ONNX Runtime's dynamic quantisation of the weights")
    export.set_defaults(handler=run_export)

    run = commands.add_parser(
        "run", help="predict with an exported model on ONNX Runtime (no torch): unrolled run EXPORTED [INPUT ...]",
        description="Run an exported folder's application on inputs, as `unrolled APP predict` does, on ONNX "
                    "Runtime. The options are the application's predict options "
                    "(unrolled run EXPORTED --help lists them).", add_help=False)
    run.add_argument("exported", metavar="EXPORTED", nargs="?", help="a folder written by unrolled export")
    run.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.add_argument("-h", "--help", action="store_true", help="show this help (after EXPORTED: its options)")
    run.set_defaults(handler=lambda args: run_exported(args, run))


def run_export(args: argparse.Namespace) -> int:
    from unrolled.export import export_run

    out = Path(args.out) if args.out else Path(f"{str(args.run).rstrip('/')}-{args.format}")
    folder = export_run(args.run, out, graphs=args.format, quantize=args.quantize)
    files = sorted(path.name for path in folder.iterdir())
    print(f"exported {args.run} to {folder}: {', '.join(files)}")
    return 0


def run_exported(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from unrolled.apps.base import to_json
    from unrolled.apps.registry import APPLICATIONS
    from unrolled.runtime import load, read_bundle

    if args.exported is None:
        if args.help:
            parser.print_help()
            return 0
        raise ValueError("give the exported folder: unrolled run EXPORTED [INPUT ...] (unrolled export RUN makes one)")
    bundle = read_bundle(args.exported)
    app = APPLICATIONS[bundle.application]
    own = type(parser)(prog=f"unrolled run {args.exported}",  # the command's parser class: one-line errors
                       description=f"{app.name} ({app.summary}) on ONNX Runtime")
    own.add_argument("inputs", nargs="*", metavar="INPUT", help=app.input_help)
    own.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime's threads (default: its own choice)")
    add_flags(own, app.predict_options())
    if args.help:
        own.print_help()
        return 0
    values = own.parse_args(args.rest)
    options = apply_flags(app.predict_options(), values)
    predictor = load(args.exported, threads=values.threads)
    inputs = app.read_inputs(list(values.inputs), options)
    for result in predictor.predict(inputs, options):
        print(json.dumps(to_json(result)) if options.json else app.show(result))
        sys.stdout.flush()
    return 0
