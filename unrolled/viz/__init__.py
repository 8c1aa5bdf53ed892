"""See inside a trained model: an LSTMVis-style state explorer, attention maps and training curves in the browser.

`record` computes a run's states over a text through `Recurrent`'s trace and
keeps them as float16 memory maps in the run folder; `select` holds LSTMVis'
select and match rules; `server` serves the page and its JSON on 127.0.0.1;
`export` writes one self-contained page for a short text.
"""
