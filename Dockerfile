# syntax=docker/dockerfile:1
#
# zambda-guard container image: a multi-stage build of the `dist` profile
# (release + fat LTO) into a small, non-root runtime with CA certificates
# (for HTTPS JWKS fetches).
#
#   docker build -t zambda-guard:0.1.0 .
#   docker run --rm zambda-guard:0.1.0 check --config /etc/zambda-guard/config.yaml
#   docker run --rm -p 8080:8080 -p 9901:9901 zambda-guard:0.1.0 demo
#
# The Helm chart (helm/zambda-guard) expects the tag to be the crate version.
# .git stays out of the context: pass the commit for `build_info`'s revision
# label with --build-arg REVISION=$(git rev-parse --short=12 HEAD).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# pingora's zlib-ng (libz-ng-sys) builds with cmake.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG REVISION=unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    ZAMBDA_GUARD_REVISION=${REVISION} cargo build --locked --profile dist --bin zambda-guard \
    && install -D -m 0755 target/dist/zambda-guard /out/zambda-guard

# Debian 12 (as the builder) with glibc, libgcc, CA certificates and tzdata;
# no shell, no package manager. Runs as uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="zambda-guard" \
      org.opencontainers.image.description="Enforces Oystehr Zambda invoke permissions in front of any function backend." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/zambda-guard /usr/local/bin/zambda-guard
# The reference config and example policies, so `check` and `run` work out of
# the box; the Helm chart mounts its own config and policies instead.
COPY --chown=0:0 config.yaml /etc/zambda-guard/config.yaml
COPY --chown=0:0 policies/ /etc/zambda-guard/policies/
USER 65532:65532
EXPOSE 8080 9901
ENTRYPOINT ["zambda-guard"]
CMD ["run", "--config", "/etc/zambda-guard/config.yaml"]
