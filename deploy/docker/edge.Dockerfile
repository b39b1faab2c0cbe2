# syntax=docker/dockerfile:1.7
#
# flashkart-edge, the store daemon, as a container image.
#
# Build from the repository root (the build context must be the workspace: cargo needs every
# member's manifest, and .dockerignore keeps target/, .git and node_modules out of it):
#
#   docker build -f deploy/docker/edge.Dockerfile -t flashkart-edge:dev .
#
# For a Raspberry Pi (arm64): docker buildx build --platform linux/arm64 ... (under emulation
# the build takes a long time; building on an arm64 machine is quicker).
#
# Needs BuildKit (the cache mounts below). The build fetches crates from crates.io and
# cr-sqlite's source from the npm registry (`npm pack`, see sync/build.rs).
#
# The image runs `flashkart-edge run` as uid 10001 (also in group dialout for serial devices)
# with its settings from FLASHKART_EDGE_* variables (listen on 0.0.0.0:8080, the store database
# in the /var/lib/flashkart-edge volume). For sync with the cloud, devices or the riders' broker
# pass a config file: `run --config /etc/flashkart/edge.toml` (see deploy/edge.example.toml);
# the variables still override it. Serial devices: `--device /dev/flashkart/scanner-1`.
# Only the daemon gets an image: the simulators (flashkart-edge-sim, flashkart-hw-sim) are
# development tools.

ARG RUST_VERSION=1.95

# ---- build -------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder

# cr-sqlite is compiled from its npm package's source by sync/build.rs: `npm pack` fetches it,
# `make loadable` builds it with gcc and the image's stable rustc. gcc, make and git come with
# the rust image; npm (and node) come from Debian. Bindings are pre-generated in the repository
# (sync/crsqlite/), so no clang/libclang is needed.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends npm

WORKDIR /src
# Every workspace member, so cargo can load the workspace (only flashkart-edge is built).
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY process process
COPY sync sync
COPY hw hw
COPY edge edge
COPY cloud cloud
COPY tests tests

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/root/.npm,sharing=locked \
    --mount=type=cache,target=/src/target,id=flashkart-target,sharing=locked \
    cargo build --release --locked -p flashkart-edge --bin flashkart-edge \
    && install -D -m 0755 target/release/flashkart-edge /out/flashkart-edge

# ---- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to the cloud. Everything else (SQLite, cr-sqlite, rustls, the broker)
# is inside the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so volumes and host directories agree; dialout (gid 20 on Debian and
# Raspberry Pi OS alike) opens the serial scanners, scales and printers passed with --device.
RUN groupadd --system --gid 10001 flashkart \
    && useradd --system --uid 10001 --gid 10001 --groups dialout \
        --home-dir /var/lib/flashkart-edge --no-create-home --shell /usr/sbin/nologin flashkart \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/flashkart-edge /var/cache/flashkart-edge

COPY --from=builder /out/flashkart-edge /usr/local/bin/flashkart-edge

# RUST_LOG (default info) sets the log levels; logs go to stderr.
ENV FLASHKART_EDGE_LISTEN=0.0.0.0:8080 \
    FLASHKART_EDGE_DATA_DIR=/var/lib/flashkart-edge \
    FLASHKART_EDGE_EXTENSION_DIR=/var/cache/flashkart-edge

USER 10001
WORKDIR /var/lib/flashkart-edge
# The store database (stock ledger, orders, staff, the riders' CA): keep this volume.
VOLUME ["/var/lib/flashkart-edge"]
# 8080: API and tablet app; 8883: riders' MQTT over TLS and 8443: rider enrolment (both only
# with a [riders] section in the config).
EXPOSE 8080 8883 8443
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/flashkart-edge"]
CMD ["run"]
