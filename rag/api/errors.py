"""The API's one error shape, OpenAI's `{"error": {"message", "type", "param", "code"}}`,
for routes and the layers in front of them alike: an OpenAI client (and every chat app
built on one) reads `message` into its exception, so ours must be there, in that place.

`param` names the request field at fault and `code` is a machine-readable reason
(`model_not_found`, `rate_limit_exceeded`, …); both are null when there is nothing to say.
"""

from fastapi.responses import JSONResponse


def error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status)


class ApiError(Exception):
    """A refusal a route raises with all of the error shape set (the app answers it)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def response(self) -> JSONResponse:
        return error(self.status, str(self), self.kind, self.param, self.code)
