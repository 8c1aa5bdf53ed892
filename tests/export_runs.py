"""Small untrained runs of the exported applications, saved as `unrolled APP train` saves them (random weights)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from unrolled.checkpoint import save_checkpoint

WORDS = ["the", "film", "is", "a", "gripping", "funny", "dull", "not", "very", "good", "bad", "story", "."]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
PHONES = ["AA", "AE", "B", "D", "EH", "F", "G", "IY", "K", "L", "M", "N", "OW", "P", "R", "S", "T"]


def lm_run(folder: Path, seed: int = 0, **model: Any) -> Path:
    from unrolled.apps.lm import checkpoint_config
    from unrolled.data.text import Vocabulary
    from unrolled.models.charlm import CharLM, CharLMConfig

    torch.manual_seed(seed)
    vocabulary = Vocabulary.from_text("First Citizen:\nBefore we proceed any further, hear me speak.")
    options = {"layers": 2, "hidden": 24, "embedding": 8, **model}
    lm = lively(CharLM(CharLMConfig(vocab_size=len(vocabulary), **options)))
    save_checkpoint(folder / "best", model_state=lm.state_dict(),
                    config=checkpoint_config(lm, vocabulary, validation={"loss": 1.5}))
    return folder


def classify_run(folder: Path, seed: int = 0, model_type: str = "rnn", **model: Any) -> Path:
    from unrolled.apps.classify import TextEncoding, build_model
    from unrolled.data.vocab import LabelSet, TokenVocabulary

    torch.manual_seed(seed)
    encoding = TextEncoding("word", 12, TokenVocabulary(WORDS))
    options = {"vocab_size": len(encoding.vocabulary), "classes": 3, "embedding": 10}
    options.update({"hidden": 12} if model_type == "rnn" else {"feature_maps": 4})
    options.update(model)
    network = build_model(model_type, options)
    config = {"kind": "classifier", "model_type": model_type, "model": asdict(network.config),
              "encoding": encoding.to_json(), "labels": LabelSet(["negative", "neutral", "positive"]).to_json()}
    save_checkpoint(folder / "best", model_state=network.state_dict(), config=config)
    return folder


def tag_run(folder: Path, seed: int = 0, **model: Any) -> Path:
    from unrolled.apps.tag import TagEncoding
    from unrolled.data.vocab import LabelSet, TokenVocabulary
    from unrolled.models.tagger import Tagger, TaggerConfig

    torch.manual_seed(seed)
    characters = TokenVocabulary(sorted({c for word in WORDS for c in word})[:6]) if model.get("chars") else None
    encoding = TagEncoding(True, 6, TokenVocabulary(WORDS), characters)
    tags = LabelSet(["DET", "NOUN", "VERB", "ADJ", "PUNCT"])
    if characters is not None:
        model["char_vocab_size"] = len(characters)
    network = lively(Tagger(TaggerConfig(vocab_size=len(encoding.vocabulary), tags=len(tags), embedding=10,
                                         hidden=12, **model)), 2.0)
    config = {"kind": "tagger", "model": asdict(network.config), "encoding": encoding.to_json(),
              "tags": tags.to_json()}
    save_checkpoint(folder / "best", model_state=network.state_dict(), config=config)
    return folder


SENTENCES = ["the film is a gripping story", "a funny film , not a dull one", "the story is very good",
             "is the film bad ?", "not very good , not very bad", "a good story is a good film"]


def seq2seq_run(folder: Path, seed: int = 0, subwords: bool = False, **model: Any) -> Path:
    from unrolled.apps.sides import Side
    from unrolled.data.vocab import TokenVocabulary
    from unrolled.models.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(seed)
    if subwords:  # both sides sentencepiece pieces, trained on a few sentences
        source = Side.build(SENTENCES, "subword", max_len=30, subword_vocab=40)
        target = Side.build(SENTENCES, "subword", max_len=10, subword_vocab=40, target=True)
    else:
        source = Side("char", TokenVocabulary(LETTERS), 12)
        target = Side("word", TokenVocabulary(["<s>", "</s>", *PHONES]), 10)
    options = {"embedding": 12, "hidden": 16, **model}
    network = Seq2Seq(Seq2SeqConfig(source_vocab=len(source.vocabulary), target_vocab=len(target.vocabulary),
                                    **options))
    lively(network, 2.0)
    config = {"kind": "seq2seq", "model": asdict(network.config), "source": source.to_json(),
              "target": target.to_json()}
    save_checkpoint(folder / "best", model_state=network.state_dict(), config=config)
    return folder


def lively(module: torch.nn.Module, scale: float = 3.0) -> torch.nn.Module:
    """Weights `scale` times their initial size: an untrained model whose greedy outputs vary, not one token."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(scale)
    return module


ALPHABET = list("abcdefgh ")


def speech_run(folder: Path, seed: int = 0, **model: Any) -> Path:
    """A random recogniser over `ALPHABET` (CTC, unless ``decoder`` says), small and lively."""
    from unrolled.features import FeatureConfig
    from unrolled.models.speech import Recogniser, SpeechConfig

    torch.manual_seed(seed)
    options = {"hidden": 8, "layers": 1, "decoder_hidden": 8, "embedding": 4, "filters": 2, "width": 3,
               "features": FeatureConfig(bands=16, stack=2, stride=2), **model}
    network = lively(Recogniser(SpeechConfig(vocabulary=len(ALPHABET) + 1, **options)), 2.0)
    config = {"kind": "speech", "model": network.config.to_json(), "alphabet": ALPHABET, "max_seconds": 10.0,
              "split": None}
    save_checkpoint(folder / "best", model_state=network.state_dict(), config=config)
    return folder


def caption_run(folder: Path, seed: int = 0, size: tuple[int, int] = (16, 12), **model: Any) -> Path:
    """A random captioner of `size` images (soft attention unless ``attention`` says), its captions `SENTENCES`."""
    from unrolled.apps.sides import Side
    from unrolled.models.captioner import Captioner, CaptionerConfig

    torch.manual_seed(seed)
    side = Side.build(SENTENCES, "word", max_len=8, target=True)
    options = {"channels": 4, "stages": 2, "embedding": 8, "hidden": 12, "dropout": 0.0, **model}
    network = Captioner(CaptionerConfig(vocab=len(side.vocabulary), **options)).eval()
    for name, part in network.named_children():
        if name != "encoder":  # the CNN keeps its size: scaled, its features would grow layer by layer
            lively(part, 2.0)
    config = {"kind": "captioner", "model": asdict(network.config), "captions": side.to_json(),
              "image_size": list(size), "split": None}
    save_checkpoint(folder / "best", model_state=network.state_dict(), config=config)
    return folder


def glimpse_run(folder: Path, seed: int = 0, reader: str = "dram", size: tuple[int, int] = (16, 24),
                **model: Any) -> Path:
    """A random reader of digit strings (DRAM or the CNN) for `size` images."""
    from unrolled.apps.glimpse import build, config_of

    torch.manual_seed(seed)
    options = {"glimpse": 4, "scales": 2, "features": 8, "hidden": 8, "per_symbol": 2, "max_digits": 3,
               "context": (8, 8), "sensor": "conv"} if reader == "dram" else {"max_digits": 3, "channels": (4, 4),
                                                                              "hidden": 8}
    network = lively(build(reader, {**options, **model}, size).eval(), 2.0)
    config = {"kind": "glimpse", "reader": reader, "model": config_of(network), "image_size": list(size),
              "split": None}
    save_checkpoint(folder / "best", model_state=network.state_dict(), config=config)
    return folder


def video_run(folder: Path, seed: int = 0, first_labelled: bool = True, **model: Any) -> Path:
    """A random frame labeller of 12 x 10 frames, three labels (the recurrent model unless ``model`` says)."""
    from unrolled.models.video import FrameLabeller, VideoConfig

    torch.manual_seed(seed)
    options = {"height": 12, "width": 10, "labels": 3, "channels": 2, "features": 6, "hidden": 5, "dropout": 0.0,
               **model}
    network = lively(FrameLabeller(VideoConfig(**options)).eval(), 2.0)
    config = {"kind": "video", "model": asdict(network.config), "label_names": ["left", "still", "right"],
              "first_labelled": first_labelled, "split": None}
    save_checkpoint(folder / "best", model_state=network.state_dict(), config=config)
    return folder


RUNS = {"lm": lm_run, "classify": classify_run, "tag": tag_run, "seq2seq": seq2seq_run, "speech": speech_run,
        "caption": caption_run, "glimpse": glimpse_run,
        "video": video_run}


def without_torch(*lines: str) -> list[str]:
    """The printed lines of a Python program that runs ``from unrolled import runtime`` and then `lines`, in a fresh
    interpreter that must end without torch imported (it fails the test otherwise)."""
    import subprocess
    import sys

    script = "; ".join(["import sys", "from unrolled import runtime", *lines,
                        "assert 'torch' not in sys.modules, 'torch was imported'"])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()
