"""The contract between the gateway and its workers: msgspec messages and framing."""
