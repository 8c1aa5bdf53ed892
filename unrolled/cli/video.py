"""`unrolled video train | run | eval`: a label for every frame of a clip (a CNN per frame, then a BiLSTM)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from unrolled.cells import CELLS
from unrolled.cli.common import add_train_options, data_file, fraction, positive_int, report_training, train_config

VIDEO_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 2e-3, "weight_decay": 0.0, "schedule": "cosine", "warmup": 0, "clip": 5.0,
    "max_epochs": 10, "eval_every": None, "early_stop": None,
}
CLIPS_FORMAT = ("DATA is a clips file: an .npz of frames uint8 (N, T, H, W) (grey, 0 black), labels (N, T) (each "
                "frame's index into label_names, -1 for none) and label_names (C,) strings; optional lengths (N,) "
                "and split (N,) of train/validation/test.")


def add_video_commands(commands: Any) -> None:
    video = commands.add_parser(
        "video", help="video frame labelling (a label per frame): train, run, eval",
        description="Label every frame of a clip: a small CNN reads each frame, then a bidirectional recurrent "
                    "layer labels every frame from the whole clip; or, for comparison, a per-frame CNN without "
                    "recurrence.")
    actions = video.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on a clips file (.npz) or moving-digits",
        description="Train a frame labeller. " + CLIPS_FORMAT + " The data's own split is used when it has one, "
                    "else a seeded split of the clips; checkpoints go to RUN/best and RUN/last.")
    train.add_argument("data", nargs="?", metavar="DATA", help="clips file (.npz)")
    train.add_argument("--dataset", help="a named dataset instead of a file (known: moving-digits: 10-frame "
                                         "clips of a digit moving on 40 x 40, each frame labelled up, down, left or "
                                         "right, the first -1)")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    data = train.add_argument_group("data")
    data.add_argument("--validation", type=fraction, default=0.1,
                      help="fraction of the clips for validation, without a split in the data (default: 0.1)")
    data.add_argument("--test", type=fraction, default=0.1,
                      help="fraction of the clips for testing, without a split in the data (default: 0.1)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the clip split (default: 0)")
    data.add_argument("--batch", type=positive_int, default=32, help="clips per batch (default: 32)")
    model = train.add_argument_group("model")
    model.add_argument("--model", choices=("recurrent", "cnn"), default="recurrent",
                       help="recurrent: CNN per frame then a bidirectional recurrent layer; cnn: the per-frame "
                            "baseline, CNN then a linear layer (default: recurrent)")
    model.add_argument("--channels", type=positive_int, default=16, help="the first convolution's channels "
                                                                          "(default: 16)")
    model.add_argument("--features", type=positive_int, default=128, help="a frame's feature size (default: 128)")
    model.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="recurrent cell (default: lstm)")
    model.add_argument("--hidden", type=positive_int, default=128, help="units per direction (default: 128)")
    model.add_argument("--layers", type=positive_int, default=1, help="stacked recurrent layers (default: 1)")
    model.add_argument("--dropout", type=fraction, default=0.1, help="dropout (default: 0.1)")
    add_train_options(train, **VIDEO_TRAIN_DEFAULTS)
    train.set_defaults(handler=video_train)

    run = actions.add_parser(
        "run", help="label every frame of clips: a clips file, a folder of frame images, or an animated image",
        description="Print 'clip TAB label label ...' per clip (one label per frame, in order). A CLIP is a clips "
                    "file (.npz; every clip in it, named FILE#k), a folder of frame images (read in name order), "
                    "or one multi-frame image (GIF, APNG, TIFF); images are read in grey and resized to the run's "
                    "frame size. A first frame prints '-' when the run was trained without labels there.")
    run.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    run.add_argument("clips", nargs="+", metavar="CLIP", help="clips file, frame folder or animated image")
    run.add_argument("--json", action="store_true", help="JSON lines {clip, labels}")
    run.set_defaults(handler=video_run)

    evaluate = actions.add_parser(
        "eval", help="per-frame accuracy beside chance, and per label",
        description="Evaluate a trained labeller on the labelled frames of a clips file. Chance is the better of "
                    "always guessing the most frequent label and guessing uniformly.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("data", nargs="?", metavar="DATA", help="clips file (.npz)")
    evaluate.add_argument("--dataset", help="a named dataset instead of a file (known: moving-digits)")
    evaluate.add_argument("--split", choices=("all", "train", "validation", "test"), default="test",
                          help="evaluate on this part of the run's split (default: test)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=video_eval)


def read_data(args: argparse.Namespace) -> Any:
    from unrolled.data.clips import read_clips

    return read_clips(data_file(args, what="a clips file (.npz)", dataset="moving-digits"))


def video_train(args: argparse.Namespace) -> int:
    from unrolled.apps import video

    clips = read_data(args)
    options = {"channels": args.channels, "features": args.features, "cell": args.cell, "hidden": args.hidden,
               "layers": args.layers, "dropout": args.dropout}
    result = video.fit(clips, args.out, model=args.model, model_options=options, train=train_config(args),
                       validation=args.validation, test=args.test, split_seed=args.split_seed,
                       batch_size=args.batch, eval_every=args.eval_every, resume=args.resume)
    return report_training(result, args.out, " nats/frame")


def video_run(args: argparse.Namespace) -> int:
    from unrolled.apps.video import VideoLabeller
    from unrolled.data.clips import read_clip, read_clips

    labeller = VideoLabeller.load(args.run)
    names, frames = [], []
    for given in args.clips:
        path = Path(given)
        if path.suffix.lower() == ".npz":
            clips = read_clips(path, labelled=False)
            if clips.size != labeller.size:
                raise ValueError(f"{path}: frames are {clips.size[0]} x {clips.size[1]}, the run reads "
                                 f"{labeller.size[0]} x {labeller.size[1]}")
            names += [f"{given}#{k}" for k in range(len(clips.lengths))]
            frames += [clips.frames[k, : clips.lengths[k]] for k in range(len(clips.lengths))]
        else:
            names.append(given)
            frames.append(read_clip(path, labeller.size))
    for name, labels in zip(names, labeller.label(frames), strict=True):
        print(json.dumps({"clip": name, "labels": labels}) if args.json else f"{name}\t{' '.join(labels)}")
    return 0


def video_eval(args: argparse.Namespace) -> int:
    from unrolled.apps.video import SplitRecord, VideoLabeller, split_clips

    labeller = VideoLabeller.load(args.run)
    clips = read_data(args)
    if clips.size != labeller.size:
        raise ValueError(f"the clips' frames are {clips.size[0]} x {clips.size[1]}, the run reads "
                         f"{labeller.size[0]} x {labeller.size[1]}")
    if args.split != "all":
        record = None if labeller.split is None else SplitRecord(**labeller.split)
        indices = split_clips(clips, record)[args.split]
        if not indices:
            raise ValueError(f"the run's {args.split} part is empty")
        clips = clips.select(indices)
    report = labeller.evaluate(clips)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['clips']} clips, {report['frames']} labelled frames ({args.split}): per-frame accuracy "
          f"{100 * report['accuracy']:.2f}%, chance {100 * report['chance']:.2f}%")
    for name, accuracy in report["per_label"].items():
        print(f"  {name:<12} {100 * accuracy:6.2f}%")
    return 0
