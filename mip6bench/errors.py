"""Errors that end a command with a one-line message naming the fix."""


class Mip6benchError(Exception):
    """A user-facing error: str(err) is the whole message, `fix` says what to do."""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.fix = fix

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.fix})" if self.fix else base


class ParameterError(Mip6benchError):
    """An unknown parameter or an impossible value."""


class EnvironmentProblem(Mip6benchError):
    """Missing privileges, binaries or kernel features."""
