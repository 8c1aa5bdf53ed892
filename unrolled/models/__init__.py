"""Applications, one file each: each model offers `loss(batch) -> (loss, metrics)` to the trainer and,
where it generates, `step(tokens, state) -> (log_probs, state)` and `reorder(state, index)` to decoding.

- `charlm`: the character-level language model (the lecture's running example).
"""

from unrolled.models.charlm import CharLM, CharLMConfig, TextStreams

__all__ = ["CharLM", "CharLMConfig", "TextStreams"]
