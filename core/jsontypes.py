"""The one name for a JSON object at a boundary (RQ return values, Redis state, `to_dict`, Block Kit).

Pure and import-free on purpose: the engine and `run-migrations` use it and must not pull in Redis.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
