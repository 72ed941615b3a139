"""The error bodies the API answers with (``api.errors``), for the document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import null_defaults_left_out, optional


class ErrorDetail(BaseModel):
    """What went wrong, inside Trove's error body: ``{"badRequest": {...}}``."""

    model_config = ConfigDict(json_schema_extra=null_defaults_left_out)

    code: int = Field(description="the HTTP status")
    message: str = Field(description="what was wrong, and what is allowed")
    request_id: str = optional(description="the request's X-Request-ID, to quote")


class KeystoneErrorDetail(BaseModel):
    """What went wrong, as Keystone says it."""

    code: int = Field(description="the HTTP status")
    title: str = Field(description="the status's name, e.g. Bad Request")
    message: str = Field(description="what was wrong")


class KeystoneError(BaseModel):
    """The identity API's error body: ``{"error": {...}}``."""

    error: KeystoneErrorDetail
