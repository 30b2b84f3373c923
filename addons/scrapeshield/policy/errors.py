"""Policy errors that say where: `file:line:col: message`."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyError:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PolicyInvalid(Exception):
    """Every error found in a policy, not just the first."""

    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors
