"""The Kimi protocol: OAuth (refresh and device grant), the usage API, the JWT reader, the doctor probe."""
