"""Intake: validate job requests, seal their secrets, record them in SQL, then enqueue (all producers)."""

from intake.errors import FieldError, IntakeError
from intake.requests import JobRequest
from intake.service import Intake

__all__ = ["FieldError", "Intake", "IntakeError", "JobRequest"]
