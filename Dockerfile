# syntax=docker/dockerfile:1.7
# One multi-stage build, one target per binary:
#   docker build --target control-plane -t weir-control-plane:0.1.0 .
#   docker build --target data-plane    -t weir-data-plane:0.1.0 .
#   docker build --target weirctl       -t weirctl:0.1.0 .
# Runtime images are distroless (glibc, CA roots, no shell) and run as the nonroot user
# (65532). See docs/deploy.md.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir-control-plane -p weir-data-plane -p weirctl \
 && mkdir -p /out \
 && cp target/release/weir-control-plane target/release/weir-data-plane target/release/weirctl /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS control-plane
COPY --from=build /out/weir-control-plane /usr/local/bin/weir-control-plane
USER 65532:65532
ENV WEIR_GRPC_LISTEN=0.0.0.0:50051 \
    WEIR_HTTP_LISTEN=0.0.0.0:8090 \
    WEIR_DATA_DIR=/var/lib/weir
EXPOSE 50051 8090
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s \
  CMD ["/usr/local/bin/weir-control-plane", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/weir-control-plane"]
CMD ["serve"]

FROM gcr.io/distroless/cc-debian12:nonroot AS data-plane
COPY --from=build /out/weir-data-plane /usr/local/bin/weir-data-plane
USER 65532:65532
ENV WEIR_LISTEN=0.0.0.0:8080 \
    WEIR_SNAPSHOT_DIR=/var/lib/weir
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s \
  CMD ["/usr/local/bin/weir-data-plane", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/weir-data-plane"]

FROM gcr.io/distroless/cc-debian12:nonroot AS weirctl
COPY --from=build /out/weirctl /usr/local/bin/weirctl
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weirctl"]
