# syntax=docker/dockerfile:1.7
#
# flashkart-cloud, the HQ aggregator, as a container image.
#
# Build from the repository root (the build context must be the workspace: cargo needs every
# member's manifest, and .dockerignore keeps target/, .git and node_modules out of it):
#
#   docker build -f deploy/docker/cloud.Dockerfile -t flashkart-cloud:dev .
#
# Needs BuildKit (the cache mounts below; the default builder of Docker 23+). The build fetches
# crates from crates.io and cr-sqlite's source from the npm registry (`npm pack`, see
# sync/build.rs), so the builder needs network access to both.
#
# The image runs `flashkart-cloud run` as uid 10001 with /etc/flashkart/cloud.toml
# (deploy/docker/cloud.toml: listen on 0.0.0.0:7800, data in the /var/lib/flashkart-cloud
# volume); mount another file there, or point FLASHKART_CLOUD_CONFIG elsewhere, to change it.
# Other subcommands work too, e.g. `docker run ... flashkart-cloud:dev register-store store-1`.

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
# Every workspace member, so cargo can load the workspace (only flashkart-cloud is built).
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY process process
COPY sync sync
COPY hw hw
COPY edge edge
COPY cloud cloud
COPY tests tests

# target/ (with the cached cr-sqlite library) and the cargo registry live in cache mounts, so
# a rebuild after a source change compiles only what changed. The binary is copied out of the
# cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/root/.npm,sharing=locked \
    --mount=type=cache,target=/src/target,id=flashkart-target,sharing=locked \
    cargo build --release --locked -p flashkart-cloud --bin flashkart-cloud \
    && install -D -m 0755 target/release/flashkart-cloud /out/flashkart-cloud

# ---- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to the payment provider and the SMTP server. Everything else
# (SQLite, cr-sqlite, rustls) is inside the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so volumes, Kubernetes' runAsUser/fsGroup and host directories agree.
RUN groupadd --system --gid 10001 flashkart \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/flashkart-cloud \
        --no-create-home --shell /usr/sbin/nologin flashkart \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/flashkart-cloud /var/cache/flashkart-cloud

COPY --from=builder /out/flashkart-cloud /usr/local/bin/flashkart-cloud
COPY deploy/docker/cloud.toml /etc/flashkart/cloud.toml

# RUST_LOG (default info) sets the log levels; logs go to stderr.
ENV FLASHKART_CLOUD_CONFIG=/etc/flashkart/cloud.toml

USER 10001
WORKDIR /var/lib/flashkart-cloud
# The SQLite databases (registry, catalog, store replicas, read model, payments, HQ) and the
# generated admin token: keep this volume, it is the cloud's state.
VOLUME ["/var/lib/flashkart-cloud"]
# HTTP (h2c and HTTP/1.1): sync, admin API, customer app, HQ dashboard, /metrics, /healthz.
EXPOSE 7800
# SIGTERM starts a graceful shutdown (in-flight requests finish, the databases close).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/flashkart-cloud"]
CMD ["run"]
