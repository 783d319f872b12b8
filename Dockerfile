# integrations-bot: a small, non-root image that runs the bot in the foreground.
# Build: docker build -t integrations-bot .
# Run:   docker run --env-file bot.env -v bot-data:/data integrations-bot
# Health: /healthz, /readyz and /metrics on port 8080; the HEALTHCHECK asks /healthz through
# `integrations-bot healthcheck` (exit 0 healthy, 1 not), which needs no other setting.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY sandbox ./sandbox
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOT_STATE_DB=/data/integrations-bot.sqlite3 \
    BOT_HTTP_HOST=0.0.0.0 \
    BOT_HTTP_PORT=8080
RUN useradd --system --uid 10001 --home-dir /data --create-home bot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# A reconnecting bot is briefly unhealthy: three failures in a row (90 s) before "unhealthy".
# --timeout is longer than the program's own 3 s, so a hanging bot is reported, not killed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["integrations-bot", "healthcheck"]
ENTRYPOINT ["integrations-bot"]
CMD ["run"]
