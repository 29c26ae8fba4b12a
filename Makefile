# The README's two commands are `make demo` and `make test`; both install what
# they need first (scripts/install-deps.sh, apt-get as root).
CARGO ?= cargo
CARGO_FLAGS ?= --locked
# Where cargo puts what it builds: CARGO_TARGET_DIR when set, as for cargo.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: deps build demo demo-clean test bench lint fmt clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --release

demo: build
	$(TARGET_DIR)/release/iris-testbed demo --controller $(TARGET_DIR)/release/iris-controller

# What a crashed or killed demo left behind: the namespaces (the testbed's
# and the broker's L1 nodes' of its PMs), the root-namespace links, the
# processes (OVS, controller, broker, gateways) and the state directories of
# every testbed whose owning process is gone. Live testbeds are left alone.
demo-clean:
	$(CARGO) build $(CARGO_FLAGS) --release -p iris-testbed
	$(TARGET_DIR)/release/iris-testbed cleanup-stale

# The scenarios run the real controller and gateway processes, so the binaries are built
# first (cargo test builds them too; this makes sure they exist). Each
# scenario runs once, here, not again under cargo test.
test: deps
	$(CARGO) test $(CARGO_FLAGS) --workspace
	$(CARGO) build $(CARGO_FLAGS) -p iris-controller -p iris-gateway -p iris-api -p iris-testbed
	$(TARGET_DIR)/debug/iris-testbed scenario all --controller $(TARGET_DIR)/debug/iris-controller

bench: deps
	$(CARGO) bench $(CARGO_FLAGS) -p ofp
	$(CARGO) build $(CARGO_FLAGS) --release -p iris-testbed -p iris-controller
	TARGET_DIR=$(TARGET_DIR) bash testbed/bench/controller.sh
	TARGET_DIR=$(TARGET_DIR) bash testbed/bench/scale.sh
	TARGET_DIR=$(TARGET_DIR) bash testbed/bench/dataplane.sh
	TARGET_DIR=$(TARGET_DIR) bash testbed/bench/moves.sh

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
