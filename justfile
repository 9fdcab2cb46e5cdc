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

# Benchmarks against the hand-written way; writes docs/benchmarks.md (root, ~20 minutes).
# baseline: an older nsfw binary whose cold and no-op apply are measured beside this one's.
# before: an nsfw binary from before a change; the published-port trial runs it beside this one.
# only: a comma-separated list of parts (apply, scale, routed, dual, dataplane, publish,
# publish-dataplane, policy, policy-dataplane); the report then holds only those.
bench runs="5" baseline="" before="" only="":
    cargo build --release
    cargo build --release --example bench
    ./target/release/examples/bench --runs {{runs}} {{ if baseline == "" { "" } else { "--baseline " + baseline } }} {{ if before == "" { "" } else { "--before " + before } }} {{ if only == "" { "" } else { "--only " + only } }} --out docs/benchmarks.md

# CNI mode against the reference bridge + portmap plugins: ADD/DEL latency with 100
# containers attached, connections/s through a published port (root, ~1 minute).
bench-cni:
    cargo build --release --bin nsfw --example bench_cni
    ./target/release/examples/bench_cni

# The man page and shell completions, into target/assets/.
assets:
    ./scripts/build-assets

# Install the binary, man page and completions under PREFIX (default /usr/local).
install prefix="/usr/local":
    PREFIX={{prefix}} ./scripts/build-assets
    install -Dm755 target/release/nsfw {{prefix}}/sbin/nsfw
    install -Dm644 target/assets/nsfw.1.gz {{prefix}}/share/man/man1/nsfw.1.gz
    install -Dm644 target/assets/nsfw.bash {{prefix}}/share/bash-completion/completions/nsfw
    install -Dm644 target/assets/_nsfw {{prefix}}/share/zsh/site-functions/_nsfw
    install -Dm644 target/assets/nsfw.fish {{prefix}}/share/fish/vendor_completions.d/nsfw.fish
    install -Dm644 -t /etc/systemd/system target/assets/systemd/nsfw@.service target/assets/systemd/nsfw-reapply@.service target/assets/systemd/nsfw-watch@.service

# The Debian package, target/debian/nsfw_*.deb (cargo-deb).
deb:
    ./scripts/build-deb
