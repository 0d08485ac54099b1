# Two commands for a newcomer (see README.md):
#   make serve   install if needed, build the sample studies if needed, start the server on 127.0.0.1:8000
#                (your own data: make serve STUDIES=/path/to/folder LABELS='{"left lung": 1, "spine": 2}';
#                more conf: CONF='--conf al_retrain_after 3 --conf device cpu')
#   make serve-pacs  the same, served from a local PACS: Orthanc with DICOMweb on 127.0.0.1:$(PACS_PORT)
#                (apt-installed when missing; `make stop-pacs` stops it)
#   make test    install if needed, run the whole test suite
#   make lint    ruff check and format check (CI runs it before the tests)
# Both only need python3 (3.11), pip's registries, g++ and the Python headers (pydensecrf2 compiles).

PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
MODELS ?= all
SAMPLE := apps/scribble_seg/data/sample
STUDIES ?= $(SAMPLE)/studies
LABELS ?=
CONF   ?=
BIN    := $(CURDIR)/$(VENV)/bin

# MONAI Label reads its settings from the environment: training tracking off, since MONAI 1.6
# rejects MLflow's default file store (the train request would fail with a 500).
export MONAI_LABEL_TRACKING_ENABLED ?= false

PACS_PORT ?= 8042
PACS_URL := http://127.0.0.1:$(PACS_PORT)/dicom-web

.PHONY: serve serve-pacs stop-pacs system test lint sample install clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q torch==2.13.0
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps -r requirements.txt
	touch $@

install: $(VENV)/.installed

sample: $(VENV)/.installed
	$(VENV)/bin/python apps/scribble_seg/sample_data.py --out $(SAMPLE)

# python -m monailabel.main, not the `monailabel` wrapper: the wrapper re-splits its arguments
# (unquoted $*), which breaks any JSON with a space, e.g. LABELS='{"left lung": 1}'.
serve: $(if $(filter $(SAMPLE)/studies,$(STUDIES)),sample,install)
	PATH="$(BIN):$$PATH" $(BIN)/python -m monailabel.main start_server --app apps/scribble_seg \
		--studies "$(STUDIES)" --host $(HOST) --port $(PORT) --conf models $(MODELS) \
		$(if $(LABELS),--conf labels '$(LABELS)') $(CONF)

# the sample studies in a local PACS (Orthanc, apt-installed when missing), then the app served from it
serve-pacs: sample
	$(BIN)/python apps/scribble_seg/pacs.py --studies $(SAMPLE)/studies --port $(PACS_PORT)
	PATH="$(BIN):$$PATH" $(BIN)/python -m monailabel.main start_server --app apps/scribble_seg \
		--studies $(PACS_URL) --host $(HOST) --port $(PORT) --conf models $(MODELS) \
		--conf dataset_conf $(SAMPLE)/studies/scribble_seg.json $(CONF)

stop-pacs:
	$(BIN)/python apps/scribble_seg/pacs.py --stop

# what the PACS and browser tests run against: Debian's Orthanc with DICOMweb and Chromium, installed
# with apt-get when missing (as root; otherwise the install line is printed)
SYSTEM_PACKAGES := orthanc orthanc-dicomweb chromium

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		else echo "missing system packages; as root run: apt-get install -y$$missing"; exit 1; fi; \
	fi

test: $(VENV)/.installed system
	$(VENV)/bin/python -m pytest

# ruff's settings are in pyproject.toml (120 columns); `ruff format .` fixes the layout
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(SAMPLE) apps/scribble_seg/model apps/scribble_seg/logs apps/scribble_seg/bin
