# The README's commands. Each target makes .venv and installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs bench bench-quality bench-classify bench-g2p bench-bible bench-eole bench-caption bench-glimpse bench-video bench-viz bench-variants bench-variants-quick bench-speech clean

# Two stamps: the runtime (what `make demo` needs: the package with every extra, `.[all]`, so that each
# application and command works after it; `pip install unrolled` alone is the core) and the development tools
# (pytest, mypy, ruff, librosa, playwright and Debian's chromium for the viz page's browser tests), which only
# `make test` and the benchmarks install. The browser is apt-installed when missing (CI runs as root on a fresh
# machine); without root it says so and those tests skip.
CHROMIUM := /usr/bin/chromium
RUNTIME_STAMP := $(VENV)/.installed-runtime

$(RUNTIME_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all]'
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	test -x $(CHROMIUM) || if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	else echo "warning: $(CHROMIUM) is missing and installing it needs root (apt-get install chromium);" \
	"the viz browser tests will be skipped"; fi
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The main job: obtain Shakespeare, train the character LM for 5 minutes (sized for this machine), sample with a
# prime the corpus uses, and say what it reached and what to run next (`unrolled demo --help`). It replaces
# runs/demo (the demo's own folder) each time.
DEMO := runs/demo
demo: $(RUNTIME_STAMP)
	rm -rf $(DEMO)
	$(BIN)/unrolled demo --out $(DEMO)

lint: $(STAMP)
	$(BIN)/ruff check unrolled tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The documentation site (mkdocs.yml, docs/) into site/, strictly: a broken link or a missing API name fails.
# `make test` builds it too (tests/test_docs.py).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python bench/recurrent_speed.py
	$(BIN)/python bench/lm_speed.py

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# About 25 minutes: MR sentence classification, CNN and BiLSTM x 3 seeds, beside TF-IDF + logistic regression.
bench-classify: $(BENCH_STAMP)
	$(BIN)/python bench/classify_mr.py

# About an hour: 30 minutes of our char LM on tinyshakespeare, then 30 of the plain PyTorch loop.
# tinyshakespeare (char-rnn's input.txt) is in no package registry: bring it, `make bench-quality TINYSHAKESPEARE=PATH`.
TINYSHAKESPEARE ?=
bench-quality: $(STAMP)
	$(BIN)/python bench/lm_quality.py --text $(TINYSHAKESPEARE) --minutes 30 --peer-minutes 30 -- --no-progress

# About 65 minutes: G2P on cmudict, 30 min with attention and 30 without (one thread each), greedy and beam 5.
bench-g2p: $(STAMP)
	$(BIN)/python bench/g2p_cmudict.py --model attention-nostress --minutes 30
	$(BIN)/python bench/g2p_cmudict.py --model none-nostress --minutes 30
	$(BIN)/python bench/g2p_cmudict.py --speed --threads 1
	$(BIN)/python bench/g2p_cmudict.py --report

# About 95 minutes: DRAM and the CNN baseline (two sizes) on digit-strings, 30 min each (one thread each), then the table.
bench-glimpse: $(STAMP)
	$(BIN)/python bench/glimpse_digits.py --model dram --minutes 30
	$(BIN)/python bench/glimpse_digits.py --model cnn --minutes 30
	$(BIN)/python bench/glimpse_digits.py --model cnn-800 --minutes 30
	$(BIN)/python bench/glimpse_digits.py --paths 4 --report

# About 65 minutes: captioning on scenes, 30 min with soft attention and 30 without.
bench-caption: $(STAMP)
	$(BIN)/python bench/caption_scenes.py --model soft --minutes 30
	$(BIN)/python bench/caption_scenes.py --model none --minutes 30
	$(BIN)/python bench/caption_scenes.py --report

# About 11 minutes: frame labelling on moving-digits, 5 min for the CNN + BiLSTM and 5 for the per-frame CNN.
bench-video: $(STAMP)
	$(BIN)/python bench/video_moving_digits.py --minutes 5

# About 2 hours: speech on spoken-digits, CTC and attention 30 min each side by side (one thread each), CTC with
# the band warp beside spoken-sentences CTC, then the test splits (greedy and beam 8), batch-1 speed beside plain
# torch.nn.LSTM, and the tables with learning curves.
bench-speech: $(STAMP)
	$(BIN)/python bench/speech.py --model ctc --tag speeds-2t --threads 2 --minutes 30 --band-warp 0.15 --speeds 0.8 0.9 1.0 1.1 1.25
	$(BIN)/python bench/speech.py --model attention --tag speeds-cos-2t --threads 2 --minutes 30 --band-warp 0.15 --speeds 0.8 0.9 1.0 1.1 1.25
	$(BIN)/python bench/speech.py --model joint --tag speeds-cos-l05-2t --threads 2 --minutes 30 --band-warp 0.15 --speeds 0.8 0.9 1.0 1.1 1.25 --ctc-weight 0.5
	$(BIN)/python bench/speech.py --dataset spoken-sentences --model ctc --minutes 30
	$(BIN)/python bench/speech.py --evaluate --warp-search --only ctc-speeds-2t attention-speeds-cos-2t joint-speeds-cos-l05-2t --report
	$(BIN)/python bench/speech.py --dataset spoken-sentences --evaluate --tuning-clips 100 --report

# About 3 minutes (both cores): the viz page on 1,000,000 characters with a 2 x 512 LSTM (recording, first paint, match query).
bench-viz: $(STAMP)
	$(BIN)/python bench/viz_speed.py

# About 60 minutes: every cell variant on adding, copy and temporal order at T = 10, 50, 100, 3 seeds (issue 9).
VARIANTS_OUT ?= bench/results/variants/run-full
bench-variants: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/unrolled bench variants --budget 60m --out $(VARIANTS_OUT) --resume
	OMP_NUM_THREADS=1 $(BIN)/python bench/variants_speed.py

# Under 5 minutes: every variant, the three synthetic tasks at T = 10 and 40, one seed.
bench-variants-quick: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/unrolled bench variants --quick --out bench/results/variants/run-quick --resume

# About 2 h 10 min: English -> Spanish Bible verses, 60 min with attention and 60 without.
bench-bible: $(STAMP)
	$(BIN)/python bench/translate_bible.py --model attention --minutes 60
	$(BIN)/python bench/translate_bible.py --model none --minutes 60
	$(BIN)/python bench/translate_bible.py --report

# About 65 minutes: ours beside Eole 0.6.4 on G2P, 30 min each; Eole in its own environment, .venv-eole.
EOLE_VENV := .venv-eole
$(EOLE_VENV)/.installed:
	test -x $(EOLE_VENV)/bin/python || $(PYTHON) -m venv $(EOLE_VENV)
	$(EOLE_VENV)/bin/python -m pip install --quiet torch==2.13.0 eole==0.6.4 aiohttp
	touch $(EOLE_VENV)/.installed
bench-eole: $(STAMP) $(EOLE_VENV)/.installed
	$(BIN)/python bench/g2p_eole.py --minutes 30 --threads 1

clean:
	rm -rf $(VENV) $(EOLE_VENV) .pytest_cache .mypy_cache .ruff_cache
