# integrations-bot: a small, non-root image that runs the bot in the foreground.
# Build: docker build -t integrations-bot .   Run: docker run --env-file bot.env integrations-bot

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
    BOT_STATE_DB=/data/integrations-bot.sqlite3
RUN useradd --system --uid 10001 --home-dir /data --create-home bot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels
USER 10001
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["integrations-bot"]
CMD ["run"]
