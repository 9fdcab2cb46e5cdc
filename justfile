# nsfw tasks. Everything that touches the kernel needs root.

default: build

# Build the release binary.
build:
    cargo build --release

# Run the whole test suite (each kernel test in its own sandbox).
test:
    ./scripts/install-deps && cargo test

# CNI mode's random-kill acceptance at full size: 200 kill -9 of ADD and DEL, 20 at a time
# (CI runs 20 of them, and the deterministic kill at every step; root, ~1.5 minutes).
cni-kills:
    NSFW_CNI_KILLS=200 cargo test --test cni_hostile killed_adds_and_dels

# The scale convergence test at full size: 40 kill -9 of the apply that adds or removes one
# namespace among 1,000 (CI runs 4; root, a few minutes).
scale-kills:
    NSFW_SCALE_KILLS=40 cargo test --release --test scale adding_and_removing

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
# before: also the binary whose cold apply the grow part sets beside this one's.
# only: a comma-separated list of parts (apply, scale, grow, routed, dual, dataplane, publish,
# publish-dataplane, policy, policy-dataplane, watch, adopt): only those run, and in an existing
# docs/benchmarks.md only their sections are replaced (each starts at a `<!-- part: NAME -->`
# line); the other parts' sections are kept as they were, so a part can be re-run alone.
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

# Install the binary, CNI plugin link, man page, completions, systemd template units and docs
# under prefix (default /usr/local), staged under DESTDIR when given: everything stays inside
# DESTDIR/prefix. Both spellings work: `just install DESTDIR=/tmp/stage prefix=/usr` (make's)
# and `just DESTDIR=/tmp/stage prefix=/usr install` (just's overrides).
DESTDIR := ""
prefix := "/usr/local"
install *settings:
    DESTDIR='{{DESTDIR}}' PREFIX='{{prefix}}' ./scripts/install {{settings}}

# The Debian package, target/debian/nsfw_*.deb (cargo-deb).
deb:
    ./scripts/build-deb

# The Debian package checked: lintian without errors, installed and purged in a throwaway
# root leaving nothing, its units verified by systemd-analyze.
check-deb: deb
    ./scripts/check-deb
