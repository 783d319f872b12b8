"""`integrations-bot healthcheck`: ask the running bot's `/healthz` whether it is healthy.

This is the container HEALTHCHECK (see the Dockerfile). It runs in a fresh process next to the
bot, every interval, so it is small on purpose:
- it reads only BOT_HTTP_HOST and BOT_HTTP_PORT (environment, or the `.env` file the bot reads),
  never the Rocket.Chat settings: a health probe must not fail because, say, a password is set in
  a secret file the probe cannot see;
- it asks over loopback, with a timeout shorter than the HEALTHCHECK's own `--timeout`, so a
  hanging bot is reported by this program's line and not by Docker killing it;
- it exits 0 (healthy) or 1 (unhealthy) and nothing else: Docker reserves exit status 2, so a
  configuration problem is reported as unhealthy too, with one line saying what is wrong.

What "healthy" means is `bot.runtime.health.healthz`: the realtime session is connected and logged in.
A bot reconnecting after a drop is briefly unhealthy; the HEALTHCHECK's `--retries` absorbs that.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config import describe_validation_error

# Seconds for the whole request. The Dockerfile's HEALTHCHECK --timeout must be longer.
TIMEOUT: Final = 3.0
HEALTHY: Final = 0
UNHEALTHY: Final = 1
_PROG: Final = "integrations-bot healthcheck"
# Addresses that mean "every interface": the bot is then reachable on the loopback address.
_WILDCARDS: Final = {"", "0.0.0.0", "::", "*"}  # noqa: S104 (we connect to them, not bind)
_LOOPBACK_NAMES: Final = {"localhost", "ip6-localhost"}


class HealthcheckSettings(BaseSettings):
    """The two settings of `bot.config.Settings` this program needs, with the same names and rules."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False, frozen=True
    )

    bot_http_host: str = "127.0.0.1"
    bot_http_port: int | None = Field(default=None, ge=0, le=65535)


@dataclass(frozen=True)
class Verdict:
    """The answer: healthy or not, and the one line that says why."""

    healthy: bool
    line: str


def probe_address(host: str) -> str:
    """Where to reach a bot listening on `host` from the same machine, as a URL host part."""
    name = host.strip().strip("[]")
    if name in _WILDCARDS or name.lower() in _LOOPBACK_NAMES:
        return "[::1]" if name == "::" else "127.0.0.1"
    return f"[{name}]" if ":" in name else name


def check(port: int | None, host: str = "127.0.0.1", *, timeout: float = TIMEOUT) -> Verdict:
    """GET `/healthz` of the bot listening on host:port; never raises."""
    if port is None:
        return Verdict(False, "the health endpoint is off: BOT_HTTP_PORT is not set (set it, e.g. 8080, and restart)")
    if port == 0:
        return Verdict(False, "BOT_HTTP_PORT=0 listens on a random port the health check cannot know; set a fixed port")
    url = f"http://{probe_address(host)}:{port}/healthz"
    try:
        # trust_env=False: an HTTP(S)_PROXY of the container must not carry a loopback request.
        response = httpx.get(url, timeout=timeout, trust_env=False, follow_redirects=False)
    except httpx.ConnectError as exc:
        return Verdict(False, f"unhealthy: nothing answers at {url} ({_reason(exc)})")
    except httpx.TimeoutException:
        return Verdict(False, f"unhealthy: {url} did not answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Verdict(False, f"unhealthy: {url} failed ({_reason(exc)})")
    state = _describe(response)
    if response.status_code == 200:
        return Verdict(True, f"healthy: {url} answered 200{state}")
    return Verdict(False, f"unhealthy: {url} answered {response.status_code}{state}")


def _describe(response: httpx.Response) -> str:
    """` (realtime ready, logged in)` from the bot's JSON body; empty if it is not the bot's."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or "realtime" not in body:
        return ""
    logged_in = "logged in" if body.get("logged_in") else "not logged in"
    return f" (realtime {body['realtime']}, {logged_in})"


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def main(env_file: str | Path | None = ".env") -> int:
    """Print one line (stdout when healthy, stderr otherwise); 0 when healthy, 1 otherwise."""
    try:
        settings = HealthcheckSettings(_env_file=env_file)
    except ValidationError as exc:
        verdict = Verdict(False, describe_validation_error(exc))
    else:
        verdict = check(settings.bot_http_port, settings.bot_http_host)
    stream = sys.stdout if verdict.healthy else sys.stderr
    stream.write(f"{_PROG}: {verdict.line}\n")
    return HEALTHY if verdict.healthy else UNHEALTHY


__all__ = ["TIMEOUT", "HealthcheckSettings", "Verdict", "check", "main", "probe_address"]
