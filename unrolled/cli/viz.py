"""`unrolled viz RUN TEXT` (serve the state explorer) and `unrolled viz export RUN TEXT -o PAGE` (one page)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from unrolled.cli.common import positive_int

USAGE = ("unrolled viz [serve] [options] RUN TEXT_OR_DATA\n"
         "       unrolled viz export [options] RUN TEXT -o PAGE.html")
DESCRIPTION = """\
See inside a trained model, in the browser (LSTMVis-style).

For a char LM run, TEXT is a UTF-8 text file (or give --part validation to use
the run's own validation text): its states (h, c and the gates of every layer)
are recorded once into RUN/viz/ and a local server on 127.0.0.1 shows them:
hidden-state tracks over the text, select (brush a range: the cells on over it
and off just before and after), matches of the selected cells elsewhere in the
text, one cell's activation behind the text, and the run's learning curves.
For a seq2seq run, DATA is a file with one source text per line; for a
captioning run, an image file or a folder of images; for a speech run
(attention or joint decoder), an audio file, a folder of them or a JSON-lines
manifest: the page shows the attention of the first --examples of them (over
the image, for captions; over the encoder's time steps, for speech).

`unrolled viz export RUN TEXT -o page.html` writes one self-contained page
(at most 5000 characters of text) that opens without a server."""


def add_viz_commands(commands: Any) -> None:
    viz = commands.add_parser("viz", help="see inside a trained model in the browser: states, attention, curves",
                              usage=USAGE, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = viz.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(viz))
    serve = actions.add_parser("serve", help="record, then serve the page on 127.0.0.1 (the default action: "
                                             "`unrolled viz RUN TEXT` is `unrolled viz serve RUN TEXT`)")
    export = actions.add_parser("export", help="write one self-contained page that opens without a server")
    for parser in (serve, export):
        parser.add_argument("run", metavar="RUN", help="the run folder")
        parser.add_argument("data", nargs="?", metavar="TEXT_OR_DATA",
                            help="a text file (char LM), a file of source lines (seq2seq), an image file or folder "
                                 "(captioner) or an audio file, folder or manifest (speech)")
        parser.add_argument("--part", choices=("validation", "test"),
                            help="char LM: show the run's own validation or test text instead of a file")
        parser.add_argument("--quantities", metavar="NAMES",
                            help="char LM: trace names to record, e.g. h,c (default: h, c and the gates)")
        parser.add_argument("--streams", type=positive_int,
                            help="char LM: parallel streams for recording a long text (default: one per 16384 "
                                 "characters, at most 64; each but the first is warmed up on the 512 characters "
                                 "before its segment)")
        parser.add_argument("--examples", type=positive_int, default=20,
                            help="seq2seq, captioner, speech: how many source lines, images or clips to show "
                                 "(default: 20)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar while recording")
        parser.add_argument("--device", default="auto",
                            help="where the model runs while recording: auto (CUDA when present, else CPU), cpu, "
                                 "cuda, cuda:N, mps (default: auto)")
    serve.add_argument("--port", type=positive_int, help="port on 127.0.0.1 (default: 8765, else a free one)")
    export.add_argument("-o", "--output", metavar="PAGE", help="the HTML file to write")
    serve.set_defaults(handler=viz_command, exporting=False)
    export.set_defaults(handler=viz_command, exporting=True)


ACTIONS = ("serve", "export")


def with_default_action(argv: list[str]) -> list[str]:
    """`unrolled viz RUN TEXT` as `unrolled viz serve RUN TEXT`: serving is the default action."""
    if len(argv) > 1 and argv[0] == "viz" and argv[1] not in (*ACTIONS, "-h", "--help"):
        return [argv[0], "serve", *argv[1:]]
    return argv


def viz_command(args: argparse.Namespace) -> int:
    if args.exporting and args.output is None:
        raise ValueError("export needs -o PAGE.html, the file to write")
    if args.data is None and not args.part:
        raise ValueError("give RUN and TEXT_OR_DATA (or --part for a char LM run's own text)")
    if args.data is not None and args.part:
        raise ValueError("give a TEXT_OR_DATA file or --part, not both")
    explorer = build_explorer(args, Path(args.run), Path(args.data) if args.data else None)
    if args.exporting:
        from unrolled.viz.export import export_page

        size = export_page(explorer, str(args.output))
        print(f"wrote {args.output} ({size / 1e6:.1f} MB): open it in a browser")
        return 0
    return serve(explorer, args.port)


def build_explorer(args: argparse.Namespace, run: Path, data: Path | None) -> Any:
    from unrolled.viz.attention import (
        CAPTION_KIND,
        SEQ2SEQ_KIND,
        SPEECH_KIND,
        audio_files,
        image_files,
        record_attention,
        record_caption_attention,
        record_speech_attention,
    )
    from unrolled.viz.explorer import Explorer
    from unrolled.viz.record import LM_KIND, record_states, run_kind

    _, kind, _ = run_kind(run)
    if kind == SEQ2SEQ_KIND:
        if data is None:
            raise ValueError("a seq2seq run needs a file with one source text per line")
        lines = data.read_text(encoding="utf-8").splitlines()[: args.examples]
        return Explorer(run, attention=record_attention(run, lines, device=args.device))
    if kind == CAPTION_KIND:
        if data is None:
            raise ValueError("a captioning run needs an image file or a folder of images")
        images = image_files(data, args.examples)
        return Explorer(run, attention=record_caption_attention(run, images, device=args.device))
    if kind == SPEECH_KIND:
        if data is None:
            raise ValueError("a speech run needs an audio file, a folder of audio files or a JSON-lines manifest")
        clips = audio_files(data, args.examples)
        return Explorer(run, attention=record_speech_attention(run, clips, device=args.device))
    if kind != LM_KIND:
        raise ValueError(f"{run} holds a {kind!r} model: `unrolled viz` shows the recurrent states of char LM runs "
                         f"and the attention of seq2seq, captioning and speech runs")
    from unrolled.data import read_text

    text = run_text(run, args.part) if data is None else read_text([data])
    quantities = [q for q in args.quantities.split(",") if q] if args.quantities else None
    bar = Progress(enabled=not args.no_progress)
    try:
        recording = record_states(run, text, quantities=quantities, streams=args.streams, on_progress=bar.update,
                                  device=args.device)
    finally:
        bar.close()
    return Explorer(run, recording=recording)


def run_text(run: Path, part: str) -> str:
    """The run's own validation or test text: its training files, read again and checked, then cut."""
    from unrolled.apps.lm import recorded_part
    from unrolled.checkpoint import load_checkpoint, resolve_checkpoint

    config = load_checkpoint(resolve_checkpoint(run)).config
    return recorded_part(config.get("data") or {}, config.get("split") or {}, part, run)


class Progress:
    """A progress bar on stderr that appears with the first step recorded (after the input is checked)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="recording states", unit="step", file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def serve(explorer: Any, port: int | None) -> int:
    from unrolled.viz.server import address, make_server

    server = make_server(explorer, port=port)
    print(f"unrolled viz: open {address(server)}  (Ctrl-C stops the server)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
