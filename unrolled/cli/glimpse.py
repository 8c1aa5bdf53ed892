"""`unrolled glimpse train | run | eval`: read digit strings from images by recurrent glimpses (DRAM) or a CNN."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from unrolled.cli.common import (
    add_train_options,
    data_file,
    fraction,
    non_negative_float,
    positive_int,
    report_training,
    train_config,
)

GLIMPSE_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "cosine", "warmup": 0, "clip": 0.0,
    "max_epochs": 10, "eval_every": None, "early_stop": None,
}


def add_glimpse_commands(commands: Any) -> None:
    glimpse = commands.add_parser(
        "glimpse", help="read digit strings from images by recurrent glimpses (Ba et al. 2014): train, run, eval",
        description="DRAM: a recurrent network that looks at an image through a sequence of glimpses, names each "
                    "digit in turn, and learns where to look by REINFORCE; or, for comparison, a CNN that reads "
                    "every digit at once.")
    actions = glimpse.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on COCO-style JSON whose captions are digit strings ('3 1 4'), or digit-strings",
        description="Train a reader. DATA is COCO-style caption JSON (see unrolled caption train) whose captions "
                    "are digits separated by spaces; the data's own split is used when it has one.")
    train.add_argument("data", nargs="?", metavar="DATA", help="COCO-style caption JSON of digit strings")
    train.add_argument("--dataset", help="a named dataset instead of a file (known: digit-strings)")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    data = train.add_argument_group("data")
    data.add_argument("--images", metavar="FOLDER", help="the image folder (default: beside DATA)")
    data.add_argument("--validation", type=fraction, default=0.05,
                      help="fraction of the images for validation, without a split in the data (default: 0.05)")
    data.add_argument("--test", type=fraction, default=0.05,
                      help="fraction of the images for testing, without a split in the data (default: 0.05)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the image split (default: 0)")
    data.add_argument("--batch", type=positive_int, default=64, help="images per batch (default: 64)")
    model = train.add_argument_group("model")
    model.add_argument("--model", choices=("dram", "cnn"), default="dram",
                       help="dram: recurrent glimpses; cnn: the baseline that reads all digits at once (default: dram)")
    model.add_argument("--max-digits", type=positive_int, help="the longest string read (default: the data's)")
    model.add_argument("--glimpse", type=positive_int, default=12, help="dram: patch side g in pixels (default: 12)")
    model.add_argument("--scales", type=positive_int, default=3,
                       help="dram: patches of sides g, 2g, ..., 2^(k-1) g (default: 3)")
    model.add_argument("--per-symbol", type=positive_int, default=3,
                       help="dram: glimpses before each digit is named (default: 3)")
    model.add_argument("--hidden", type=positive_int, default=256,
                       help="dram: units of each core LSTM; cnn: the hidden layer (default: 256)")
    model.add_argument("--std", type=fraction, default=0.05,
                       help="dram: the location policy's standard deviation, in half-images (default: 0.05)")
    model.add_argument("--sensor", choices=("conv", "linear"), default="conv",
                       help="dram: what the glimpse network does with the patches: two 3x3 convolutions, or one "
                            "linear layer as Ba et al.'s MNIST models (default: conv)")
    model.add_argument("--guide", type=non_negative_float, default=20.0,
                       help="dram: weight of the pull of each glimpse towards its digit's box, where the data give "
                            "boxes (digit-strings does); 0: REINFORCE alone, as Ba et al. (default: 20)")
    add_train_options(train, **GLIMPSE_TRAIN_DEFAULTS)
    train.set_defaults(handler=glimpse_train)

    run = actions.add_parser(
        "run", help="read the digits of image files, one line per image",
        description="Print 'file TAB digits' per image (resized to the run's image size); --path draws the first "
                    "image's glimpses, in order, into a PNG.")
    run.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    run.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    run.add_argument("--path", metavar="PNG", help="draw the glimpse path of the first image (dram runs)")
    run.add_argument("--json", action="store_true", help="JSON lines {image, digits, glimpses: [[y, x], ...]}")
    run.set_defaults(handler=glimpse_run)

    evaluate = actions.add_parser(
        "eval", help="sequence error overall and by string length",
        description="Evaluate a trained reader: the share of strings not read whole, overall and by length.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("data", nargs="?", metavar="DATA", help="COCO-style caption JSON of digit strings")
    evaluate.add_argument("--dataset", help="a named dataset instead of a file (known: digit-strings)")
    evaluate.add_argument("--images", metavar="FOLDER", help="the image folder (default: beside DATA)")
    evaluate.add_argument("--split", choices=("all", "train", "validation", "test"), default="test",
                          help="evaluate on this part of the run's split (default: test)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=glimpse_eval)


def read_data(args: argparse.Namespace, size: tuple[int, int] | None) -> Any:
    from unrolled.data.images import read_coco

    path = data_file(args, what="COCO-style caption JSON of digit strings", dataset="digit-strings")
    return read_coco(path, size=None if args.dataset else size, image_folder=None if args.dataset else args.images)


def glimpse_train(args: argparse.Namespace) -> int:
    from unrolled.apps import glimpse

    data = read_data(args, None)
    options: dict[str, Any] = {}
    if args.max_digits:
        options["max_digits"] = args.max_digits
    if args.model == "dram":
        options.update(glimpse=args.glimpse, scales=args.scales, per_symbol=args.per_symbol, hidden=args.hidden,
                       features=args.hidden, std=args.std, guide=args.guide, sensor=args.sensor)
    else:
        options["hidden"] = args.hidden
    result = glimpse.fit(data, args.out, model=args.model, model_options=options, train=train_config(args),
                         validation=args.validation, test=args.test, split_seed=args.split_seed,
                         batch_size=args.batch, eval_every=args.eval_every, resume=args.resume)
    return report_training(result, args.out, " nats/symbol")


def glimpse_run(args: argparse.Namespace) -> int:
    from unrolled.apps.glimpse import Reader, plot_glimpses
    from unrolled.data.images import read_images
    from unrolled.models.glimpse import Glimpses

    reader = Reader.load(args.run)
    if args.path and not isinstance(reader.model, Glimpses):
        raise ValueError(f"{args.run} is a CNN reader: it takes no glimpses, so there is no path to draw")
    images = read_images([Path(p) for p in args.images], size=reader.size)
    strings, centres = reader.read(images)
    for k, (name, digits) in enumerate(zip(args.images, strings, strict=True)):
        text = " ".join(map(str, digits))
        if args.json:
            print(json.dumps({"image": name, "digits": text,
                              "glimpses": None if centres is None else centres[k].tolist()}))
        else:
            print(f"{name}\t{text}")
    if args.path and centres is not None and isinstance(reader.model, Glimpses):
        plot_glimpses(images[0], centres[0], reader.model.config, args.path, title=" ".join(map(str, strings[0])))
        print(f"glimpses of {args.images[0]}: {args.path}", file=sys.stderr)
    return 0


def glimpse_eval(args: argparse.Namespace) -> int:
    from unrolled.apps.caption import SplitRecord, split_images
    from unrolled.apps.glimpse import Reader

    reader = Reader.load(args.run)
    data = read_data(args, reader.size)
    if args.split == "all":
        indices = list(range(len(data.names)))
    else:
        indices = split_images(data, None if reader.split is None else SplitRecord(**reader.split))[args.split]
        if not indices:
            raise ValueError(f"the run's {args.split} part is empty")
    report = reader.evaluate(data, indices)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['images']} images, {args.split}: sequence error {100 * report['sequence_error']:.2f}% "
          f"({report['per_second']:.0f} images/s)")
    for length, row in report["by_length"].items():
        print(f"  {length} digit(s): {row['images']:5d} images, sequence error {100 * row['sequence_error']:.2f}%")
    return 0
