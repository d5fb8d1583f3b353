# Multi-stage build: compile with the Rust toolchain, run on a small Debian image as non-root.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY webhooks ./webhooks
# The production image leaves the Stripe simulator out (production never starts it).
RUN cargo build --release --locked --no-default-features --bin tollgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home tollgate
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
# The catalog (plans, prices by Stripe lookup key, forward-auth rules): edit deploy/plans.toml.
COPY deploy/plans.toml /etc/tollgate/plans.toml
ENV TOLLGATE_PLANS=/etc/tollgate/plans.toml
# Starts as root only to hand a freshly mounted volume at /data to the `tollgate` user, then runs
# tollgate as that user (setpriv, from util-linux, in the base image).
COPY deploy/entrypoint.sh /usr/local/bin/tollgate-entrypoint
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/tollgate-entrypoint"]
ENV TOLLGATE_BIND=0.0.0.0:8080
EXPOSE 8080
CMD ["tollgate", "serve"]
