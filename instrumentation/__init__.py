"""SDK instrumentations. Each module named in INSTRUMENTORS patches one SDK when it is installed.

Importing this package loads nothing else: `import thinkmeter` (for `tags`) goes through it, and the
OTel SDK, wrapt and the patch modules are loaded by `instrument()` only.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from thinkmeter.instrumentation._safety import log_once

if TYPE_CHECKING:
    from thinkmeter.instrumentation._endpoints import EndpointResolver
    from thinkmeter.instrumentation._patch import Patcher
    from thinkmeter.instrumentation._telemetry import Telemetry

# SDK import name -> instrumentation module. Each SDK is patched when the application imports it:
# thinkmeter never imports one itself (seconds and tens of MB each; transformers pulls in torch, litellm
# fetches a price map from the network).
INSTRUMENTORS = {
    "openai": "thinkmeter.instrumentation.openai_sdk",
    "anthropic": "thinkmeter.instrumentation.anthropic_sdk",
    "google.genai": "thinkmeter.instrumentation.gemini_sdk",
    "ollama": "thinkmeter.instrumentation.ollama_sdk",
    "botocore": "thinkmeter.instrumentation.bedrock_sdk",
    "mistralai": "thinkmeter.instrumentation.mistral_sdk",
    "litellm": "thinkmeter.instrumentation.litellm_sdk",
    "transformers": "thinkmeter.instrumentation.transformers_generate",
}


def instrument_installed(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> list[str]:
    """Patch every supported SDK that is installed; returns the names of those patched."""
    patched = []
    for sdk, module_name in INSTRUMENTORS.items():
        if not _installed(sdk):
            continue
        try:
            importlib.import_module(module_name).instrument(patcher, telemetry, resolver)
        except Exception:
            log_once(f"instrument:{sdk}", "thinkmeter: cannot instrument %s; its calls stay untraced", sdk)
            continue
        patched.append(sdk)
    return patched


def _installed(sdk: str) -> bool:
    try:
        return importlib.util.find_spec(sdk) is not None
    except ModuleNotFoundError:  # a dotted name ("google.genai") whose parent package is missing
        return False
