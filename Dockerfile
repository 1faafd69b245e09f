FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY config ./config
RUN pip install --no-cache-dir . && useradd --create-home gateway && mkdir -p /data && chown gateway /data
USER gateway

# Without REDIS_URL the gateway runs its embedded Redis with AOF in /data; settlements that wait for Redis are
# spooled there too: mount a volume. On 0.0.0.0, /metrics needs GATEWAY__METRICS__TOKEN (or the admin token).
# `gateway serve` runs one worker process per core the container may run on (its CPU affinity, not a CPU quota):
# under a quota set GATEWAY__SERVER__WORKERS to it (1: a single process).
ENV GATEWAY__REDIS__DATA_DIR=/data/redis \
    GATEWAY__SERVER__SPOOL_DIR=/data/spool \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080
VOLUME ["/data"]
EXPOSE 8080
CMD ["gateway", "serve", "--config", "config/gateway.toml"]
