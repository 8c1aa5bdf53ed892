"""The networks: `nn.Module`s and their configuration dataclasses only (no files, no training, no data
pipelines; those are the applications', `unrolled.apps`). Each offers `loss(batch) -> (loss, metrics)` to the
trainer and, where it generates, `step(tokens, state) -> (log_probs, state)` and `reorder(state, index)` to
decoding. Besides the ones below: `seq2seq`, `captioner`, `glimpse` and `speech`.

- `charlm`: the character-level language model (the lecture's running example).
- `classifier`: many-to-one, a class per token sequence: `RNNClassifier` (last/mean/max/attention
  pooling) and Kim's `CNNClassifier`.
- `tagger`: many-to-many, a tag per step: `Tagger` (BiLSTM over words, optional character features,
  or float feature vectors).
- `video`: many-to-many over frames: `FrameLabeller` (a CNN per frame, then the tagger's recurrence,
  or a linear layer for the per-frame baseline).
- `pooling`: what they share: masks over padded batches, embeddings, pooling over the real steps.
"""

from unrolled.models.charlm import CharLM, CharLMConfig
from unrolled.models.classifier import CNNClassifier, CNNClassifierConfig, RNNClassifier, RNNClassifierConfig
from unrolled.models.tagger import Tagger, TaggerConfig

__all__ = [
    "CNNClassifier",
    "CNNClassifierConfig",
    "CharLM",
    "CharLMConfig",
    "RNNClassifier",
    "RNNClassifierConfig",
    "Tagger",
    "TaggerConfig",
]
