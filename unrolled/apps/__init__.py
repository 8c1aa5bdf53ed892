"""The applications, every one in the same shape: configuration dataclasses, `fit`, a predictor, ``APP``.

- `base`: the interface they share: `RunConfig` (a configuration), `Application` (how the command
  line and ``import unrolled`` see one), the `Predictor` base (``load`` / ``predict`` / ``evaluate``),
  and the predict and eval options; `common`: the helpers several applications share; `results`:
  the text applications' results, plain dataclasses without torch (the runtime returns them too).
- `registry`: the table of applications, one line each.
- the applications: `lm` (character language model), `classify` (sentence classification, RNN or
  CNN), `tag` (a label per token), `seq2seq` (translation, auto-reply, pronunciation), `caption`
  (image captioning), `glimpse` (reading digit strings by recurrent glimpses), `video` (a label per
  frame), `speech` (transcription; its predictor is in `transcriber`, its data pipeline in
  `speech_data`).
- shared by some: `split` (a recorded train / validation / test split), `sides` (seq2seq's and
  captioning's text sides), `images` (the image data and options of caption and glimpse).

A new application is one module here ending in ``APP = Application(...)`` and one line in
`registry` (see `base`).
"""
