"""The API's one error shape, `{"error": {"message", "type"}}` (OpenAI's), for routes and
the layers in front of them alike."""

from fastapi.responses import JSONResponse


def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)
