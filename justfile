# nsfw tasks. Everything that touches the kernel needs root.

default: build

# Build the release binary.
build:
    cargo build --release

# Run the whole test suite (each kernel test in its own sandbox).
test:
    ./scripts/install-deps && cargo test

# Build and try the embedded lab in a throwaway sandbox.
try file="":
    cargo run --release -- try {{file}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Benchmarks against the hand-written way; writes docs/benchmarks.md (root, ~10 minutes).
bench runs="5":
    cargo build --release --example bench
    ./target/release/examples/bench --runs {{runs}} --out docs/benchmarks.md
