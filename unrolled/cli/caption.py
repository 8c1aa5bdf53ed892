"""`unrolled caption train | run | eval`: a CNN encoder and an LSTM decoder with soft attention."""

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

CAPTION_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "cosine", "warmup": 0, "clip": 5.0,
    "max_epochs": 10, "eval_every": None, "early_stop": None,
}
DATASETS = "scenes, digit-strings, emoji"


def add_caption_commands(commands: Any) -> None:
    caption = commands.add_parser(
        "caption", help="image captioning (CNN + LSTM with soft attention): train, caption images, evaluate",
        description="A CNN reads each image into a grid of features; an LSTM writes the caption, attending over "
                    "the grid (Show, Attend and Tell) or reading the image once as its first input.")
    actions = caption.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser(
        "train", help="train on COCO-style caption JSON (with its image folder) or a named dataset",
        description="Train a captioner. DATA is COCO-style JSON: {images: [{id, file_name, split?}], annotations: "
                    "[{image_id, caption}]} with the images beside it (or in images/ there). The data's own split "
                    "is used when every image has one, else a seeded split of the images; checkpoints go to "
                    "OUT/best and OUT/last.")
    train.add_argument("data", nargs="?", metavar="DATA", help="COCO-style caption JSON")
    train.add_argument("--dataset", help=f"a named dataset instead of a file (known: {DATASETS})")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    data = train.add_argument_group("data")
    data.add_argument("--images", metavar="FOLDER", help="the image folder (default: beside DATA, or DATA's images/)")
    data.add_argument("--image-size", type=positive_int, default=64, metavar="PIXELS",
                      help="user images are resized to this square size (default: 64; named datasets keep theirs)")
    data.add_argument("--tokens", choices=("word", "char"), default="word", help="caption tokens (default: word)")
    data.add_argument("--validation", type=fraction, default=0.05,
                      help="fraction of the images for validation, without a split in the data (default: 0.05)")
    data.add_argument("--test", type=fraction, default=0.05,
                      help="fraction of the images for testing, without a split in the data (default: 0.05)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the image split (default: 0)")
    data.add_argument("--min-freq", type=positive_int, default=1,
                      help="words seen fewer times in training become <unk> (default: 1)")
    data.add_argument("--max-len", type=positive_int, default=40,
                      help="caption tokens; longer captions are left out of training (default: 40)")
    data.add_argument("--batch", type=positive_int, default=64, help="captions per batch (default: 64)")
    model = train.add_argument_group("model")
    model.add_argument("--attention", choices=("soft", "none"), default="soft",
                       help="soft: attend over the image grid at every word (Xu et al. 2015); none: the image is "
                            "the first input and the only link (default: soft)")
    model.add_argument("--channels", type=positive_int, default=32,
                       help="CNN channels of the first stage, doubled at each next one (default: 32)")
    model.add_argument("--stages", type=positive_int, default=3,
                       help="CNN stages; each halves the grid (default: 3)")
    model.add_argument("--embedding", type=positive_int, default=64, help="word embedding size (default: 64)")
    model.add_argument("--hidden", type=positive_int, default=256, help="LSTM units (default: 256)")
    model.add_argument("--dropout", type=fraction, default=0.3, help="dropout before the output (default: 0.3)")
    model.add_argument("--doubly-stochastic", type=non_negative_float, default=1.0, metavar="LAMBDA",
                       help="weight of the attention regulariser mean_i (1 - sum_t alpha_ti)^2 (default: 1)")
    model.add_argument("--encoder-weights", metavar="FILE",
                       help="start the CNN from this state dict (torch.save or .safetensors) of the same shape")
    model.add_argument("--freeze-encoder", action="store_true", help="keep the CNN as it is (no training)")
    add_train_options(train, **CAPTION_TRAIN_DEFAULTS)
    train.set_defaults(handler=caption_train)

    run = actions.add_parser(
        "run", help="caption image files, one line per image",
        description="Caption each image (any size or format Pillow reads; resized to the run's size) by beam "
                    "search (--beam 1 is greedy); prints 'file TAB caption', or with --n-best K, K lines 'file "
                    "TAB rank TAB score TAB caption' per image.")
    run.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    run.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    add_decoding_options(run)
    run.add_argument("--n-best", type=positive_int, default=1, help="captions per image (default: 1)")
    run.add_argument("--max-len", type=positive_int, metavar="N",
                     help="most tokens generated (default: the run's --max-len, and </s>)")
    run.add_argument("--json", action="store_true", help="JSON lines {image, captions: [{text, score, ...}]}")
    run.add_argument("--attention-map", metavar="PNG",
                     help="draw the first image's attention, one panel per word, into this PNG strip")
    run.set_defaults(handler=caption_run)

    evaluate = actions.add_parser(
        "eval", help="exact match, BLEU-1..4 and chrF, greedy and beam side by side",
        description="Evaluate a trained captioner: exact match (the caption equals one of the image's captions), "
                    "token error, BLEU-1..4 and chrF (sacrebleu, every caption of an image a reference), for greedy "
                    "decoding and for --beam.")
    evaluate.add_argument("run", metavar="RUN", help="run folder or checkpoint folder")
    evaluate.add_argument("data", nargs="?", metavar="DATA", help="COCO-style caption JSON")
    evaluate.add_argument("--dataset", help=f"a named dataset instead of a file (known: {DATASETS})")
    evaluate.add_argument("--images", metavar="FOLDER", help="the image folder (default: beside DATA)")
    evaluate.add_argument("--split", choices=("all", "train", "validation", "test"), default="test",
                          help="evaluate on this part of the run's split (default: test)")
    add_decoding_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=caption_eval)


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beam", type=positive_int, default=5, help="beam size; 1 is greedy (default: 5)")
    parser.add_argument("--length-penalty", type=float, default=0.0, metavar="ALPHA",
                        help="GNMT length penalty alpha; 0 ranks by total log-probability (default: 0)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images decoded at once (default: 64)")


def read_data(args: argparse.Namespace, size: tuple[int, int] | None) -> Any:
    """The ImageCaptions of DATA or --dataset; user images resized to `size` (None: --image-size square)."""
    from unrolled.data.images import read_coco

    path = data_file(args, what="COCO-style caption JSON", dataset="scenes")
    if args.dataset:
        return read_coco(path, size=None)
    if size is None:
        size = (args.image_size, args.image_size)
    return read_coco(path, size=size, image_folder=args.images)


def caption_train(args: argparse.Namespace) -> int:
    from unrolled.apps import caption

    data = read_data(args, None)
    options = {"attention": args.attention, "channels": args.channels, "stages": args.stages,
               "embedding": args.embedding, "hidden": args.hidden, "dropout": args.dropout,
               "doubly_stochastic": args.doubly_stochastic, "freeze_encoder": args.freeze_encoder}
    result = caption.fit(data, args.out, model_options=options, train=train_config(args), tokens=args.tokens,
                         min_freq=args.min_freq, max_len=args.max_len, validation=args.validation, test=args.test,
                         split_seed=args.split_seed, batch_size=args.batch, eval_every=args.eval_every,
                         encoder_weights=args.encoder_weights, resume=args.resume)
    return report_training(result, args.out, " nats/token")


def caption_run(args: argparse.Namespace) -> int:
    from unrolled.apps.caption import ImageCaptioner, plot_attention_strip
    from unrolled.data.images import read_images

    captioner = ImageCaptioner.load(args.run)
    if args.n_best > args.beam:
        raise ValueError(f"--n-best {args.n_best} needs a beam at least as wide (--beam {args.beam})")
    if args.attention_map and captioner.model.config.attention != "soft":
        raise ValueError(f"{args.run} was trained without attention (--attention none): there is no map to draw")
    images = read_images([Path(p) for p in args.images], size=captioner.size)
    results = captioner.caption(images, beam=args.beam, n_best=args.n_best, length_penalty=args.length_penalty,
                                max_length=args.max_len, batch_size=args.batch_size,
                                attention=args.attention_map is not None)
    for name, outputs in zip(args.images, results, strict=True):
        if args.json:
            print(json.dumps({"image": name, "captions": [
                {"text": o.text, "score": o.score, "normalised": o.normalised, "finished": o.finished}
                for o in outputs]}, ensure_ascii=False))
        elif args.n_best > 1:
            print("".join(f"{name}\t{rank}\t{o.normalised:.4f}\t{o.text}\n" for rank, o in enumerate(outputs, 1)))
        else:
            print(f"{name}\t{outputs[0].text}")
    if args.attention_map:
        plot_attention_strip(images[0], results[0][0], args.attention_map)
        print(f"attention of {args.images[0]}: {args.attention_map}", file=sys.stderr)
    return 0


def caption_eval(args: argparse.Namespace) -> int:
    from unrolled.apps.caption import ImageCaptioner, SplitRecord, split_images

    captioner = ImageCaptioner.load(args.run)
    data = read_data(args, captioner.size)
    if args.split == "all":
        indices = list(range(len(data.names)))
    else:
        record = None if captioner.split is None else SplitRecord(**captioner.split)
        indices = split_images(data, record)[args.split]
        if not indices:
            raise ValueError(f"the run's {args.split} part is empty")
    beams = (1,) if args.beam == 1 else (1, args.beam)
    report = captioner.evaluate(data, indices, beams=beams, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['images']} images ({report['captions']} captions), {args.split}")
    print(f"{'decoding':<10} {'exact %':>8} {'tok err %':>9} {'BLEU-1':>6} {'BLEU-2':>6} {'BLEU-3':>6} "
          f"{'BLEU-4':>6} {'chrF':>6} {'images/s':>9}")
    for beam in beams:
        s = report[f"beam{beam}"]
        name = "greedy" if beam == 1 else f"beam {beam}"
        print(f"{name:<10} {100 * (1 - s['sequence_error']):8.2f} {100 * s['token_error']:9.2f} "
              + " ".join(f"{s[f'bleu{n}']:6.2f}" for n in (1, 2, 3, 4)) + f" {s['chrf']:6.2f} {s['per_second']:9.1f}")
    return 0
