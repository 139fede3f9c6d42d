"""Read a JWT's `exp` claim without verifying it: only to warn before a forced login."""

from __future__ import annotations

import base64
import json
import math


def jwt_expiry(token: str) -> float | None:
    """Epoch seconds from the token's `exp` claim, or None when the token is opaque."""
    parts = token.split(".") if token else []
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return None
    return float(exp)
