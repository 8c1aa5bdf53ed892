"""Applications end to end: data files -> vocabulary -> model -> trainer -> checkpoint -> predictions and scores.

One file per application that combines several models or a data pipeline of
its own:

- `lm`: the character-level language model: train on text, sample, evaluate.
- `classify`: sentence classification with the RNN or the CNN classifier.
- `tag`: a label per token with the bidirectional tagger.
- `video`: a label per video frame: a CNN per frame, then the tagger's bidirectional recurrent layer.
"""
