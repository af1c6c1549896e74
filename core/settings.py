"""The base of every settings section: unknown keys are an error, not silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A table of ``parley.toml`` (``[http]``, ``[stt]``…); a typo in a key fails validation."""

    model_config = ConfigDict(extra="forbid")
