# acctstream container image. Not built on the development machines (they
# have no Docker engine): keep it simple and check it when you build it.
#
#   docker build -t acctstream .
#   docker run -e DATABASE_URL=... -e ACCTSTREAM_PSEUDONYM_KEY=... \
#              -e ACCTSTREAM_API_TOKENS=... -p 8080:8080 acctstream

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own that is reused while
# Cargo.toml, Cargo.lock and the workspace's other crate (crates/: the
# embedded PostgreSQL, rarely changed) stay the same: build them with empty
# sources of the service.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/acctstream* target/release/deps/acctstream-* \
           target/release/deps/libacctstream-* target/release/.fingerprint/acctstream-*
# Then the crate itself: its sources, the migrations, the OpenAPI document and
# the Swagger UI files it embeds.
COPY src src
COPY sql sql
COPY static static
COPY openapi.yaml ./
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin acctstream
COPY --from=build /src/target/release/acctstream /usr/local/bin/acctstream
USER acctstream
WORKDIR /tmp
ENV ACCTSTREAM_BIND=0.0.0.0:8080 \
    ACCTSTREAM_LOG_FORMAT=json
EXPOSE 8080
# `acctstream healthcheck` asks /healthz on ACCTSTREAM_BIND (no curl needed).
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 \
    CMD ["acctstream", "healthcheck"]
# SIGTERM (docker stop) lets in-flight streams finish for up to
# ACCTSTREAM_SHUTDOWN_GRACE_SECONDS (30); give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["acctstream"]
CMD ["serve"]
