"""The one HTTP client for platform calls: timeouts, error mapping, no hidden retries.

`PlatformClient.request` either returns the decoded answer or raises `PlatformError` with `retryable` set, so
the send job can decide alone when to retry (with `backoff_seconds`) and when to give up.
"""
from __future__ import annotations

import email.utils
import functools
import json
import os
import random
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from adapters.base import PlatformError

# Graph error codes that mean "try again later" [doc]: 1 unknown, 2 service, 4 app rate limit, 17 user rate
# limit, 32 page rate limit, 341 app limit, 613 call rate limit; 80000-80014 business use case rate limits.
RETRYABLE_GRAPH_CODES = frozenset({1, 2, 4, 17, 32, 341, 613})
BUSINESS_USE_CASE_CODES = range(80000, 80015)

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 900.0
_ERROR_SNIPPET_CHARS = 300


def new_session() -> requests.Session:
    """A requests session that reads the environment once instead of on every call.

    With `trust_env` (requests' default) every call scans the process environment for proxy settings and looks
    for a ~/.netrc: ~0.2 ms of CPU per Graph call, measured, about a third of the client's own cost, paid by
    every send and every name lookup. Here the CA bundle (REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE) is read when the
    session is made and the proxies (HTTP(S)_PROXY, NO_PROXY) once per host (`environ_proxies`), as
    `PlatformClient.request` passes them; ~/.netrc is not read (platform calls carry their own tokens)."""
    session = requests.Session()
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


@functools.lru_cache(maxsize=256)
def _origin_proxies(origin: str) -> dict[str, str]:
    return dict(requests.utils.get_environ_proxies(origin))  # {} when NO_PROXY covers the host


def environ_proxies(url: str) -> dict[str, str]:
    """The proxies the environment sets for `url`'s scheme and host, read at the first call for that origin."""
    parts = urlsplit(url)
    return _origin_proxies(f"{parts.scheme}://{parts.netloc}")


class PlatformClient:
    """Calls one platform API rooted at `base_url` (e.g. "https://graph.facebook.com/v21.0").

    `graph_errors` (default True) reads Meta's `{"error": {...}}` envelope on failed calls; pass False for
    endpoints that are not Meta's (our API channel's customer webhooks) so their error bodies are not
    mistaken for Graph codes.
    """

    def __init__(self, base_url: str, timeout: float = 10, session: requests.Session | None = None, *,
                 graph_errors: bool = True):
        self.base_url = base_url
        self.timeout = timeout
        self.session = session if session is not None else new_session()
        self.graph_errors = graph_errors

    def url_for(self, path: str) -> str:
        """`base_url` + "/" + `path`; an empty path is the base URL exactly as given (a webhook URL)."""
        path = path.lstrip("/")
        return f"{self.base_url.rstrip('/')}/{path}" if path else self.base_url

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, data: Any = None, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Make one call and return the answer as a dict.

        A 2xx answer returns the JSON object; a JSON value that is not an object comes back as
        `{"data": value}`, a non-JSON body as `{"body": text}` and an empty body as `{}`.
        Raises PlatformError: network errors, timeouts, 429 and 5xx are retryable; a Graph error envelope
        is mapped by `graph_error`; redirects and other 4xx are not retryable. `maybe_delivered` is set
        when the request left but no answer came back (read timeout, dropped connection). Never retries.
        """
        try:
            url = self.url_for(path)
            response = self.session.request(
                method, url, params=params, json=json, data=data, headers=headers, timeout=self.timeout,
                allow_redirects=False, proxies=environ_proxies(url) or None)
        # `from None`: requests' exceptions quote the full URL, access token included, and chained
        # exceptions end up in logs.
        except requests.Timeout as exc:
            raise PlatformError(f"timed out after {self.timeout}s: {method} {path}", retryable=True,
                                maybe_delivered=not _never_sent(exc)) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            raise PlatformError(f"network error: {method} {path}: {_describe(exc)}", retryable=True,
                                maybe_delivered=not _never_sent(exc)) from None
        except (requests.RequestException, ValueError) as exc:
            # Invalid URL, bad scheme...: configuration errors, retrying cannot help.
            raise PlatformError(f"request failed: {method} {path}: {_describe(exc)}") from None
        return _answer(response, graph_errors=self.graph_errors)


_SECRET_PARAMS = re.compile(r"((?:access_token|appsecret_proof|token|key|secret)=)[^&\s'\")]+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the values of token-like query parameters replaced by "***"."""
    return _SECRET_PARAMS.sub(r"\1***", text)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {redact(str(exc))}"


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # NewConnectionError (refused, DNS failure) is a ConnectTimeoutError in urllib3's hierarchy
    return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)


def _answer(response: requests.Response, *, graph_errors: bool) -> dict[str, Any]:
    body = _decode_body(response)
    if 200 <= response.status_code < 300:
        return body
    retry_after = retry_after_seconds(response.headers)
    envelope = body.get("error")
    if graph_errors and isinstance(envelope, dict):
        raise graph_error(envelope, http_status=response.status_code, retry_after=retry_after)
    if 300 <= response.status_code < 400:
        location = redact(response.headers.get("Location", "?"))
        raise PlatformError(f"unexpected redirect HTTP {response.status_code} to {location}",
                            http_status=response.status_code)
    raise PlatformError(f"HTTP {response.status_code}: {_snippet(response)}",
                        http_status=response.status_code,
                        retryable=_retryable_status(response.status_code), retry_after=retry_after)


def _decode_body(response: requests.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        value = response.json()
    except ValueError:
        return {"body": response.text}
    return value if isinstance(value, dict) else {"data": value}


def _snippet(response: requests.Response) -> str:
    text = redact(" ".join(response.text.split()))
    if not text:
        return response.reason or "empty answer"
    return text[:_ERROR_SNIPPET_CHARS] + ("..." if len(text) > _ERROR_SNIPPET_CHARS else "")


def _retryable_status(http_status: int | None) -> bool:
    return http_status is not None and (http_status == 429 or http_status >= 500)


def is_retryable_graph_code(code: int | None) -> bool:
    """True for the Graph codes that mean rate limited or transient (see RETRYABLE_GRAPH_CODES)."""
    return code is not None and (code in RETRYABLE_GRAPH_CODES or code in BUSINESS_USE_CASE_CODES)


def graph_error(envelope: Mapping[str, Any], *, http_status: int | None = None,
                retry_after: float | None = None) -> PlatformError:
    """Build the PlatformError for a Graph `error` object.

    Retryable when the code is a rate-limit/transient code, when Graph flags it `is_transient`, or when the
    HTTP status is 429 or 5xx.
    """
    code = _as_int(envelope.get("code"))
    retryable = (is_retryable_graph_code(code) or envelope.get("is_transient") is True
                 or _retryable_status(http_status))
    return PlatformError(
        str(envelope.get("message") or f"Graph error (HTTP {http_status})"),
        code=code, subcode=_as_int(envelope.get("error_subcode")), http_status=http_status,
        retryable=retryable, retry_after=retry_after,
        error_type=_as_str(envelope.get("type")), trace_id=_as_str(envelope.get("fbtrace_id")))


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait that the answer asked for, or None.

    Reads `Retry-After` (delta seconds or an HTTP date), else Meta's `X-Business-Use-Case-Usage`
    `estimated_time_to_regain_access` (minutes) when it is above zero.
    """
    value = get_header(headers, "Retry-After")
    if value:
        return _parse_retry_after(value.strip(), now=now)
    usage = get_header(headers, "X-Business-Use-Case-Usage")
    return _regain_access_seconds(usage) if usage else None


def _parse_retry_after(value: str, *, now: float | None) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _regain_access_seconds(usage_header: str) -> float | None:
    try:
        usage = json.loads(usage_header)
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    minutes = [entry.get("estimated_time_to_regain_access")
               for entries in usage.values() if isinstance(entries, list)
               for entry in entries if isinstance(entry, dict)]
    waits = [float(m) for m in minutes if isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0]
    return max(waits) * 60.0 if waits else None


def backoff_seconds(attempt: int, retry_after: float | None = None, *, base: float = BACKOFF_BASE_SECONDS,
                    cap: float = BACKOFF_CAP_SECONDS, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1 = first retry).

    Exponential (base * 2**(attempt-1), at most `cap`) with "equal jitter": a random value between half and
    all of it, so retries spread out yet never come back at once. When the platform gave `retry_after`,
    the delay is at least that (even above `cap`: the platform knows best).
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    jittered = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
    if retry_after is not None and retry_after > 0:
        return max(jittered, float(retry_after))
    return jittered


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """The header `name` from any mapping, matching the name case-insensitively as HTTP does."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
