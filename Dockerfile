# depot's container image: build with the Rust toolchain, run on Debian slim
# as an unprivileged user.
#
#   docker build -t depot --build-arg DEPOT_COMMIT=$(git rev-parse --short HEAD) .
#   docker run -d -p 8080:8080 -v depot-data:/data depot
#
# The server starts in token mode: on first start it writes an admin token to
# /data/admin.token (mode 0600) and logs where it is; clients send
# `Authorization: Bearer <token>`.
#
# With a depot binary built elsewhere (glibc 2.36 or older, x86-64), skip the
# build stage: put the binary, named `depot`, alone in a directory and build
# from there:
#
#   docker build -f Dockerfile --build-arg BINARY=prebuilt DIR
#
# .ci/container_test.sh does that with the binary the tests built.

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_BASE=docker.io/library/debian:bookworm-slim
# Where the binary comes from: `build` (compile here) or `prebuilt`.
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
# RocksDB's bindings are generated with libclang.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The context has no .git: the commit comes in as an argument.
ARG DEPOT_COMMIT=unknown
ENV DEPOT_COMMIT=${DEPOT_COMMIT} CARGO_TARGET_DIR=/src/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin depot \
 && install -D -m 0755 target/release/depot /out/depot

FROM scratch AS prebuilt
COPY depot /out/depot

FROM ${BINARY} AS binary

FROM ${RUNTIME_BASE} AS runtime
ARG DEPOT_COMMIT=unknown
LABEL org.opencontainers.image.title="depot" \
      org.opencontainers.image.description="A streaming file server on a content-addressed, deduplicating chunk store" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.revision="${DEPOT_COMMIT}"
# A fixed uid/gid, so that a bind-mounted /data can be prepared for it.
RUN groupadd --system --gid 10001 depot \
 && useradd --system --uid 10001 --gid depot --home-dir /data --shell /usr/sbin/nologin depot \
 && mkdir -p /data \
 && chown depot:depot /data \
 && chmod 0750 /data
COPY --from=binary /out/depot /usr/local/bin/depot
ENV DEPOT_LISTEN=0.0.0.0:8080 \
    DEPOT_DATA_DIR=/data \
    DEPOT_AUTH_MODE=token \
    DEPOT_SERVER=http://127.0.0.1:8080
USER depot:depot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# The server shuts down gracefully on SIGTERM (and SIGINT): requests in
# flight finish, long uploads keep what arrived, the store closes cleanly.
# Give it time: `docker stop -t 30`, or stop_grace_period in compose.
STOPSIGNAL SIGTERM
# /healthz answers 503 while the store opens, hence the start period. The
# image has no curl: the binary asks (one try, five seconds at most).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["depot", "health"]
ENTRYPOINT ["depot"]
CMD ["serve"]
