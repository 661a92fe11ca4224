"""Which provider and engine sit behind a client's base URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from thinkmeter.schemas.semconv import ENGINE_NAMES

# gen_ai.provider.name values of the GenAI semconv where one exists.
KNOWN_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "api.groq.com": "groq",
    "openrouter.ai": "openrouter",
    "api.mistral.ai": "mistral_ai",
    "api.perplexity.ai": "perplexity",
}
KNOWN_HOST_SUFFIXES = {
    ".openai.azure.com": "azure.ai.openai",
    "-aiplatform.googleapis.com": "gcp.vertex_ai",
}
# Provider names that are self-hosted inference engines.
ENGINES = frozenset(ENGINE_NAMES)
UNKNOWN_PROVIDER = "openai_compatible"


@dataclass(frozen=True, slots=True)
class Endpoint:
    provider: str
    engine: str | None
    address: str | None
    port: int | None
    origin: str | None = None  # scheme://host:port of a self-hosted engine, for its own endpoints


class EndpointResolver:
    """Maps base URLs to endpoints; `overrides` keys are "host" or "host:port", values provider names."""

    def __init__(self, overrides: dict[str, str] | None = None, default: str = UNKNOWN_PROVIDER) -> None:
        self._overrides = {k.lower(): v for k, v in (overrides or {}).items()}
        self._default = default
        self._cache: dict[tuple[str, str | None], Endpoint] = {}

    def resolve(self, base_url: object, default: str | None = None) -> Endpoint:
        """`default`: the provider of an unknown host, for SDKs that speak one provider's own protocol
        (an unknown host behind the anthropic SDK is an Anthropic proxy, not an OpenAI-compatible one)."""
        key = (str(base_url), default)
        endpoint = self._cache.get(key)
        if endpoint is None:
            endpoint = self._resolve(key[0], default or self._default)
            if len(self._cache) < 1_000:
                self._cache[key] = endpoint
        return endpoint

    def _resolve(self, url: str, default: str) -> Endpoint:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
        provider = self._overrides.get(f"{host}:{port}") or self._overrides.get(host) or KNOWN_HOSTS.get(host)
        if provider is None:
            provider = next((p for suffix, p in KNOWN_HOST_SUFFIXES.items() if host.endswith(suffix)), default)
        engine = provider if provider in ENGINES else None
        origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if engine and parts.scheme and parts.netloc else None
        return Endpoint(provider, engine, host or None, port, origin)
