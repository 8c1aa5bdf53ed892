"""The LSTM and GRU variants benchmark (Greff et al. 2017; Jozefowicz et al. 2015) on long-range tasks.

- `train`: one variant on one task: build, train, score.
- `suite`: every variant on every task, lengths and seeds, and the table of results.
- `findings`: the paired comparisons the results page states.

It is a study of the core (cells and `Recurrent`), not an application: it has
no run folders to load and predict from.
"""
