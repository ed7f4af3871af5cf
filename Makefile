# `make demo` and `make test` each create .venv on first use and reuse it afterwards.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The arm64 sysroot the litert-arm64 / onnxruntime-arm64 runtimes run in under QEMU.
ARM64_ROOT := $(or $(BAS_ARM64_SYSROOT),.arm64)
ARM64_STAMP := $(ARM64_ROOT)/.bas-arm64-ready

.PHONY: demo test test-quick docs lint venv arm64 pacs parity-arm64 data data-widened train train-bench train-cpu \
	finetune finetune-deploy results-finetune results-realism clean

$(STAMP): pyproject.toml constraints.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,convert,archive]'
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

venv: $(STAMP)

# Debian's arm64 python3.11 and libraries, the pinned aarch64 wheels, qemu-user-static
# (installed with apt where missing: root). Rebuilt only when its recipe changes.
$(ARM64_STAMP): $(STAMP) runtimes/arm64/sysroot.py runtimes/arm64/requirements.txt
	$(PY) -m runtimes.arm64.sysroot --out $(ARM64_ROOT)

arm64: $(ARM64_STAMP)

# Orthanc with its DICOMweb plugin (tests/support/pacs.py starts its own on free ports), dciodvfy and
# dcmtk, installed with apt where missing (root). Checked on every run, no stamp: a stamp
# would outlive a removed package. A service the install started (systemd, or an init that
# runs it) is stopped again, by its unit or its pid file only, never by the program's name.
PACS_NEEDS := /usr/sbin/Orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so dciodvfy storescu
PACS_PACKAGES := orthanc orthanc-dicomweb dicom3tools dcmtk
PACS_MISSING = for x in $(PACS_NEEDS); do \
	case $$x in /*) test -e $$x ;; *) command -v $$x >/dev/null ;; esac || echo $$x; done

pacs:
	@missing="$$($(PACS_MISSING))"; test -z "$$missing" && exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "make pacs:" $$missing "missing; run make pacs as root" \
		"once (it installs $(PACS_PACKAGES) with apt-get)" >&2; exit 1; fi; \
	echo "make pacs:" $$missing "missing; installing $(PACS_PACKAGES)"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $(PACS_PACKAGES) || exit 1; \
	if [ -d /run/systemd/system ]; then systemctl stop orthanc.service; \
	elif [ -s /run/orthanc.pid ]; then kill "$$(cat /run/orthanc.pid)" && rm -f /run/orthanc.pid; fi; \
	missing="$$($(PACS_MISSING))"; test -z "$$missing" \
		|| { echo "make pacs: still missing after apt-get install:" $$missing >&2; exit 1; }

# Every LiteRT and onnxruntime artifact of the matrix, checked on the host's kernels and on
# ARM64's (emulated: int8 on every frame of the parity set, float on each video's first).
parity-arm64: $(ARM64_STAMP)
	$(PY) -m converters.all --targets onnx,tflite --arm64 --out reports/parity-arm64

# Segment a synthetic clip, convert BaS-S (stream form, as the demo runs it) to every target
# and precision and print the parity table (a cell that fails parity is named, and the demo
# goes on with the others; any other error stops it), then segment the clip again through the fastest
# converted artifact that passed parity (overlay video, masks, CSV, area plot), and end with
# device_bench's speed table of every artifact that passed parity (every runtime given
# all the cores: their own defaults differ).
demo: $(STAMP)
	$(PY) -m model.demo --out reports/demo
	@echo "Converting BaS-S to every target and checking parity (log: reports/demo/convert.log)"
	$(PY) -m converters.all --variants S --forms stream --out reports/demo/artifacts \
		2> reports/demo/convert.log || { grep '^FAILED' reports/demo/convert.log \
		&& echo "(cells that failed parity are not used below)" \
		|| { tail -n 5 reports/demo/convert.log; exit 1; }; }
	@echo "Timing the converted artifacts on this machine (runtimes.fastest)"
	$(PY) -m runtimes.fastest reports/demo/artifacts > reports/demo/fastest.txt \
		2> reports/demo/fastest.log || { tail -n 5 reports/demo/fastest.log; exit 1; }
	@grep '^|' reports/demo/fastest.log
	$(PY) -m segmentation --artifact "$$(cat reports/demo/fastest.txt)" \
		--input reports/demo/clip --out reports/demo/segment 2> reports/demo/segment.log \
		|| { tail -n 5 reports/demo/segment.log; exit 1; }
	@echo "Speed of BaS-S on this machine (device_bench; every artifact that passed parity)"
	$(VENV)/bin/device_bench sweep --variants S --forms stream --cache reports/demo/artifacts \
		--iters 60 --rounds 3 --threads "$$($(PY) -c 'import os; print(os.cpu_count())')" \
		--results reports/demo/bench.jsonl \
		> reports/demo/bench.md 2> reports/demo/bench.log \
		|| { tail -n 5 reports/demo/bench.log; exit 1; }
	@$(VENV)/bin/device_bench report reports/demo/bench.jsonl --short \
		--chart reports/demo/fps.png

# The whole suite; BAS_REQUIRE_* turn a missing sysroot or PACS into failures, not skips.
test: $(STAMP) $(ARM64_STAMP) pacs
	$(PY) -m ruff check .
	BAS_REQUIRE_ARM64=1 BAS_REQUIRE_PACS=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=15
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir reports/site

# The edit-and-test loop (under two minutes on two cores): every test not marked slow, .venv only.
test-quick: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not slow" --durations=10

# The data the shipped weights were trained (seed 0) and tested (seed 1) on.
data: $(STAMP)
	test -d data/synth_train || $(PY) -m model.data.synth --videos 128 --frames 60 --seed 0 --workers 2 --out data/synth_train
	test -d data/synth_test || $(PY) -m model.data.synth --videos 12 --frames 60 --seed 1 --out data/synth_test

# Stage 3 of the 2-core recipe trains on the same 128 videos with every scanner change of
# model.data.synth --widen drawn into half of them (docs/realism.md says why).
data-widened: data
	test -d data/synth_train_widened || $(PY) -m model.data.synth --videos 128 --frames 60 \
		--seed 0 --widen all --widen-share 0.5 --workers 2 --out data/synth_train_widened

# Reproduce the shipped weights: three stages per variant (see configs/; stages 1 and 2 were
# trained on one GPU, which accelerate uses when there is one; stage 3, TempLP's gate, on
# the 2-core CPU).
train: data
	$(PY) -m model.train --config configs/bas_s.yml
	$(PY) -m model.train --config configs/bas_s_stage2.yml
	$(PY) -m model.train --config configs/bas_s_stage3.yml
	$(PY) -m model.train --config configs/bas_l.yml
	$(PY) -m model.train --config configs/bas_l_stage2.yml
	$(PY) -m model.train --config configs/bas_l_stage3.yml

# Training's speed on this machine: each fast path as a ratio to the shipped recipe's loop,
# and the compute the CPU recipe projects (figures, not a test).
train-bench: data-widened
	$(PY) -m model.train_bench --config configs/bas_s.yml --recipe configs/cpu/bas_s_1.yml --recipe configs/cpu/bas_s_2.yml --recipe configs/cpu/bas_s_3.yml

# The same recipe on a CPU (configs/cpu/), for one variant: make train-cpu VARIANT=L. Each
# stage resumes from its last finished epoch, so a run may span several sessions.
VARIANT ?= S
train-cpu: data-widened
	$(PY) -m model.train --config configs/cpu/bas_$(shell echo $(VARIANT) | tr SL sl)_1.yml --resume
	$(PY) -m model.train --config configs/cpu/bas_$(shell echo $(VARIANT) | tr SL sl)_2.yml --resume
	$(PY) -m model.train --config configs/cpu/bas_$(shell echo $(VARIANT) | tr SL sl)_3.yml --resume

# Fine-tune the shipped weights on your own labelled videos (any layout model.data reads),
# a quarter held out by video: make finetune DATA=DIR [VARIANT=S] [RUN=DIR] [MINUTES=10].
# Run again, it resumes the run in RUN (the time budget counts every session).
DATA ?=
RUN ?= runs/finetune_$(shell echo $(VARIANT) | tr SL sl)
MINUTES ?= 10
finetune: $(STAMP)
	@test -n "$(DATA)" || { echo "make finetune: name your videos: DATA=DIR" >&2; exit 2; }
	$(PY) -m model.finetune --variant $(VARIANT) --data "$(DATA)" --out "$(RUN)" \
		--minutes $(MINUTES) $(if $(wildcard $(RUN)/split.json),--resume)

# From labelled videos to checked phone files: fine-tune, convert the best weights for
# TARGETS x PRECISIONS (stream form; int8 calibrated on DATA), and check each artifact's
# parity on the fine-tune's held-out videos of DATA. Artifacts and parity.md in RUN/artifacts.
TARGETS ?= tflite,executorch
PRECISIONS ?= fp32,int8
finetune-deploy: finetune
	$(PY) -m converters.all --variants $(VARIANT) --weights "$(RUN)/best.safetensors" \
		--targets $(TARGETS) --precisions $(PRECISIONS) --forms stream \
		--calibration "$(DATA)" --data "$(DATA)" --split "$(RUN)/split.json" --subset val \
		--out "$(RUN)/artifacts"

# The fine-tuning figures of the docs (results/finetune.json): BaS-S fine-tuned for up to 10
# minutes on 6 labelled videos in another scanner's look (model.data.looks), scored on 6 more
# in that look and in ours; the recipe, then with more frames that lose their evidence and
# more patience. On an otherwise idle machine: the budget is wall time.
FINETUNE_TRIAL := reports/finetune-trial
results-finetune: $(STAMP)
	$(PY) -m model.data.synth --videos 6 --frames 40 --seed 7 --out $(FINETUNE_TRIAL)/ours_train
	$(PY) -m model.data.synth --videos 6 --frames 40 --seed 7 --first-index 6 \
		--out $(FINETUNE_TRIAL)/ours_test
	$(PY) -m model.data.looks --look sepia-low-range --data $(FINETUNE_TRIAL)/ours_train \
		--out $(FINETUNE_TRIAL)/scanner_train
	$(PY) -m model.data.looks --look sepia-low-range --data $(FINETUNE_TRIAL)/ours_test \
		--out $(FINETUNE_TRIAL)/scanner_test
	$(PY) -m model.finetune --variant S --data $(FINETUNE_TRIAL)/scanner_train \
		--out $(FINETUNE_TRIAL)/run_s --minutes 10 --test $(FINETUNE_TRIAL)/scanner_test \
		--test $(FINETUNE_TRIAL)/ours_test --results results/finetune.json \
		$(if $(wildcard $(FINETUNE_TRIAL)/run_s/split.json),--resume)
	$(PY) -m model.finetune --variant S --data $(FINETUNE_TRIAL)/scanner_train \
		--out $(FINETUNE_TRIAL)/run_s_weak --minutes 10 --test $(FINETUNE_TRIAL)/scanner_test \
		--test $(FINETUNE_TRIAL)/ours_test --results results/finetune.json \
		--set augment.weak=0.4 --set patience=6 \
		$(if $(wildcard $(FINETUNE_TRIAL)/run_s_weak/split.json),--resume)
	$(PY) -m bas_deploy.results

# B-mode realism (docs/realism.md): stage 3 of the 2-core recipe once per scanner change
# drawn into its training set, from the same stage-2 weights, each scored on kept-back
# scanner video, an unseen seed and the held-out set (results/realism.json). Hours on 2
# cores: a stopped row resumes. REALISM_ROWS picks the rows, in order.
REALISM_ROWS ?= shipped,none,convex,focus,dynamic-range,orientation,all
results-realism: data
	$(PY) -m model.realism --variant $(VARIANT) --rows $(REALISM_ROWS)
	$(PY) -m bas_deploy.results

# The figures of the docs: each producer writes its file in results/ (with the command, date,
# machine and versions that made it) and `make render` turns them into docs/generated/,
# docs/img/speed.png and the README's status table. `make results` re-runs the accuracy,
# parity and DICOM producers; `make results-speed` the speed ones, apart: run it on a quiet
# machine only. RESULTS_DIR, DOCS_DIR and README_FILE send everything elsewhere (a trial run).
RESULTS_DIR ?= results
DOCS_DIR ?= docs
README_FILE ?= README.md
RESULTS_WORK ?= reports/results
EVALUATE := $(PY) -m model.evaluate --data data/synth_test --lost-contact 5 \
	--results $(RESULTS_DIR)/evaluation.json
SCREENS := --screen letterbox --screen annotated --screen small
# int16x8 is left out: on a CPU LiteRT runs it on reference kernels (it is meant for NPUs).
SPEED_SWEEP ?= --precisions fp32,fp16,int8 --iters 60 --rounds 3 --warmup 10
TRAIN_BENCH_CONFIG ?= configs/bas_s.yml
TRAIN_BENCH_ARGS ?= --recipe configs/cpu/bas_s_1.yml --recipe configs/cpu/bas_s_2.yml \
	--recipe configs/cpu/bas_s_3.yml
RENDER := $(PY) -m bas_deploy.results --results $(RESULTS_DIR) --docs $(DOCS_DIR) \
	--readme $(README_FILE)
.PHONY: results results-speed render

results: data
	$(EVALUATE) --variant S $(SCREENS)
	$(EVALUATE) --variant S --no-history
	$(EVALUATE) --variant L $(SCREENS)
	$(EVALUATE) --variant L --no-history
	$(PY) -m converters.all --out $(RESULTS_WORK)/artifacts --results $(RESULTS_DIR)/parity.json \
		|| [ $$? -eq 1 ]  # a cell that fails parity is a result too: the status table shows it
	$(PY) -m bas_deploy.results dicom-examples --results $(RESULTS_DIR)/dicom_examples.json \
		--artifact $(RESULTS_WORK)/artifacts/bas_s_stream_240_fp32.tflite
	$(RENDER)

# Every cell's artifact comes from `make results`' folder where it is there (converted and
# checked otherwise); the sweep is written whole, then put in place.
results-speed: data-widened
	mkdir -p $(RESULTS_WORK) $(RESULTS_DIR) && rm -f $(RESULTS_WORK)/speed.jsonl.new
	$(VENV)/bin/device_bench sweep --cache $(RESULTS_WORK)/artifacts $(SPEED_SWEEP) \
		--threads "$$($(PY) -c 'import os; print(os.cpu_count())')" \
		--results $(RESULTS_WORK)/speed.jsonl.new > $(RESULTS_WORK)/speed.md
	mv $(RESULTS_WORK)/speed.jsonl.new $(RESULTS_DIR)/speed.jsonl
	$(PY) -m model.train_bench --config $(TRAIN_BENCH_CONFIG) $(TRAIN_BENCH_ARGS) \
		--results $(RESULTS_DIR)/train_bench.json
	$(RENDER)

render: $(STAMP)
	$(RENDER)

# The docs site (docs/, mkdocs.yml) into site/; a broken link, anchor or snippet, or a page
# missing from the nav, fails it. `.venv/bin/mkdocs serve` shows it while you edit.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) reports
