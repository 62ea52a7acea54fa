"""Intake: validate job requests, seal their secrets, record them in SQL, then enqueue (all producers)."""

from genqueue.intake.errors import FieldError, IntakeError
from genqueue.intake.requests import JobRequest
from genqueue.intake.service import Intake

__all__ = ["FieldError", "Intake", "IntakeError", "JobRequest"]
