# Two commands for a newcomer: `make run` and `make test`. Everything else is set up on demand
# and cached inside the checkout (.venv, .cache/jars, .cache/m2), so second runs are fast.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
MVN    := mvn -q -B -Dstyle.color=never -Dmaven.repo.local=$(CURDIR)/.cache/m2
JARS   := .cache/jars/kafka-broker/.fetched .cache/jars/flink-connector/.fetched .cache/jars/flink-udf/zeroscan-flink-udf.jar
UDF_SRC := $(shell find pipelines/java -name '*.java')
# Its folders too: removing a source changes its folder, so the jar is built again without it.
UDF_DIRS := $(shell find pipelines/java -type d)

.PHONY: run test test-faults setup venv jars models browser bench bench-text bench-images bench-images-ab bench-restart bench-hostile bench-faults bench-churn bench-retro bench-ceiling bench-state kafka-up kafka-down clean

run: setup
	$(BIN)/zeroscan demo

# The suite on TEST_WORKERS pytest-xdist processes, each test file on one (a file's module
# fixtures, the Flink cluster's, start once): its integration tests mostly wait (job starts,
# checkpoints, the source's commits), so two share 2 cores. TEST_WORKERS=0 runs it serially.
TEST_WORKERS ?= 2

test: setup browser
	$(BIN)/pytest -q -m "not faults" $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# The portal's browser tests drive Debian's headless Chromium through its chromedriver; installed
# from Debian's packages where missing (these machines and CI run as root).
browser:
	test -x /usr/bin/chromedriver || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver)

# The fault tests (kill -9 of a running job's processes); several minutes.
test-faults: setup
	$(BIN)/pytest -q -m faults

setup: venv jars models

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

jars: $(JARS)

# The OCR graphs as the job runs them: the wheel's, each hard-swish in two nodes instead of four
# (models/ocr_graphs.py; the reader also makes them on first use where this did not run).
models: .cache/models/.rewritten

.cache/models/.rewritten: models/ocr_graphs.py $(VENV)/.installed
	$(BIN)/python -m models.ocr_graphs
	touch $@

.cache/jars/%/.fetched: connectors/maven/%/pom.xml
	rm -rf .cache/jars/$*
	$(MVN) -f $< dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/.cache/jars/$*
	touch $@

# The job's Java functions (pipelines/java), compiled against the Flink jars of the installed
# apache-flink wheel, so their versions always match.
.cache/jars/flink-udf/zeroscan-flink-udf.jar: $(UDF_SRC) $(UDF_DIRS) $(VENV)/.installed
	rm -rf .cache/jars/flink-udf && mkdir -p .cache/jars/flink-udf/classes
	javac --release 17 -nowarn -cp "$$($(BIN)/python -c 'import pyflink, os; print(os.path.join(os.path.dirname(pyflink.__file__), "lib"))')/*" \
		-d .cache/jars/flink-udf/classes $(UDF_SRC)
	jar cf $@ -C .cache/jars/flink-udf/classes .

bench: setup
	$(BIN)/python -m benchmarks.pipeline_bench

bench-text: setup
	$(BIN)/python -m benchmarks.text_matching

bench-images: setup
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/images.py

# A new image's cost in this tree beside BASE's (default: the previous commit), from a worktree of
# BASE under .cache, alternating fresh processes, two rounds (~10 min; prints ratios, writes nothing).
BASE ?= HEAD~1
bench-images-ab: setup
	rm -rf .cache/ab-base && git worktree prune
	git worktree add -f --detach .cache/ab-base $(BASE)
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks.ab_images --rounds 2 base=.cache/ab-base new=.
	git worktree remove --force .cache/ab-base

bench-restart: setup
	$(BIN)/python -m benchmarks.restart

bench-hostile: setup
	$(BIN)/python benchmarks/hostile.py

# The re-post fast path while one brand updates every second (in process, ~2 min).
bench-churn: setup
	$(BIN)/python -m benchmarks.brand_churn

# A new brand checked against 1,000,000 live listings: the retro worker's pre-filter, the job's scan of
# the candidates (in process; writes benchmarks/results/retro.json).
bench-retro: setup
	$(BIN)/python -m benchmarks.retro

# Flink's own cost per record (a copy job with the scanner's settings) beside the Python passthrough
# and zeroscan's identical re-posts, one broker, two rounds (~6 min; benchmarks/results/flink_ceiling.json).
bench-ceiling: setup
	$(BIN)/python -m benchmarks.flink_ceiling

# A listing update's cost with 50,000 and 1,000,000 live listings in the job's keyed state
# (~15 min; variants side by side: README, Throughput).
bench-state: setup
	$(BIN)/python -m benchmarks.state_scale

kafka-up: setup
	$(BIN)/zeroscan kafka up

kafka-down: setup
	$(BIN)/zeroscan kafka down

clean:
	-$(BIN)/zeroscan kafka down
	rm -rf .state

# Faults under load on the dev cluster: writes benchmarks/results/faults.json (~12 min on 2 cores).
bench-faults: setup
	$(BIN)/python -m benchmarks.faults
