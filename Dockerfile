# coedit container image: multi-stage build, runs as an unprivileged user, data in a volume.
#   docker build -t coedit .
#   docker run -p 8080:8080 -v coedit-data:/var/lib/coedit -v ./coedit.toml:/etc/coedit/coedit.toml:ro coedit
# The container listens on 0.0.0.0:8080 (COEDIT_BIND), so it refuses to start until the mounted
# configuration turns authentication on ([auth], docs/DEPLOY.md) or, for a closed trial
# network, says [server] allow_insecure = true.
# The build needs the Rust toolchain image and the crates.io registry; the runtime image is
# Debian slim with only the binary and its default configuration.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin coedit

FROM debian:bookworm-slim
RUN groupadd --system coedit \
 && useradd --system --gid coedit --home-dir /var/lib/coedit --shell /usr/sbin/nologin coedit \
 && install -d -o coedit -g coedit -m 0750 /var/lib/coedit /etc/coedit
COPY --from=build /src/target/release/coedit /usr/bin/coedit
COPY packaging/coedit.toml /etc/coedit/coedit.toml
USER coedit
VOLUME ["/var/lib/coedit"]
EXPOSE 8080
ENV COEDIT_LOG=info COEDIT_LOG_FORMAT=json COEDIT_BIND=0.0.0.0:8080
# Ready = store readable and accepting (GET /readyz answers 200); bash's /dev/tcp, no curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/coedit"]
CMD ["serve", "--config", "/etc/coedit/coedit.toml"]
