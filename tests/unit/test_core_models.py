"""Unit tests (no I/O beyond tmp files): status machine, settings, secret sealing, ids, intake validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from genqueue.core.crypto import (
    MASK,
    SecretsError,
    decrypt_secrets,
    encrypt_secrets,
    load_cipher,
    masked_input,
    rotate,
    write_key_file,
)
from genqueue.core.settings import ConfigError, load_settings
from genqueue.intake.requests import JobRequest
from genqueue.intake.schemas import validate_jigsawstack
from genqueue.models.ids import new_id
from genqueue.models.status import (
    TERMINAL,
    InvalidTransition,
    JobStatus,
    can_transition,
    check_transition,
    job_status_for_prediction,
)


def test_terminal_statuses_leave_only_by_a_replay() -> None:
    # 0008: a failed or canceled job may be queued again (a replay); a succeeded one never moves.
    for src in TERMINAL:
        for dst in JobStatus:
            assert can_transition(src, dst) == (src in (JobStatus.FAILED, JobStatus.CANCELED)
                                                and dst is JobStatus.QUEUED)


def test_create_is_claimed_before_running() -> None:
    assert can_transition(JobStatus.QUEUED, JobStatus.SUBMITTING)
    assert not can_transition(JobStatus.QUEUED, JobStatus.RUNNING)
    assert can_transition(JobStatus.SUBMITTING, JobStatus.QUEUED)  # create surely never arrived
    with pytest.raises(InvalidTransition):
        check_transition(JobStatus.STORING, JobStatus.CANCELED)


@pytest.mark.parametrize(("pred", "job"), [
    ("starting", JobStatus.RUNNING), ("processing", JobStatus.RUNNING), ("succeeded", JobStatus.STORING),
    ("failed", JobStatus.FAILED), ("aborted", JobStatus.FAILED), ("canceled", JobStatus.CANCELED),
])
def test_every_replicate_status_maps(pred: str, job: JobStatus) -> None:
    assert job_status_for_prediction(pred) is job


def test_settings_defaults_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(_env_file=None)
    assert s.replicate_base_url == "https://api.replicate.com/v1"
    assert s.effective_database_url.startswith("sqlite:///") and s.effective_storage_url.startswith("file://")
    assert s.allowed_hosts == ["replicate.delivery", "*.replicate.delivery"]
    monkeypatch.setenv("REPLICATE_BASE_URL", "https://api.replicate.com")
    with pytest.raises(ConfigError, match="REPLICATE_BASE_URL"):
        load_settings(_env_file=None)
    monkeypatch.delenv("REPLICATE_BASE_URL")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert load_settings(_env_file=None).database_url == "postgresql+psycopg://u@h/db"
    monkeypatch.setenv("GENQUEUE_JOB_DEADLINE", "soon")
    with pytest.raises(ConfigError, match="GENQUEUE_JOB_DEADLINE"):
        load_settings(_env_file=None)


def test_token_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REPLICATE_API_TOKEN"):
        load_settings(_env_file=None, replicate_api_token=None).token()


def test_secrets_sealed_rotated_and_masked(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = encrypt_secrets(load_cipher(old, tmp_path), {"api_key": "sk_unit_fake"})
    assert sealed and "sk_unit_fake" not in sealed
    both = load_cipher(f"{new},{old}", tmp_path)
    assert decrypt_secrets(both, sealed) == {"api_key": "sk_unit_fake"}
    rotated = rotate(both, sealed)
    assert decrypt_secrets(load_cipher(new, tmp_path), rotated) == {"api_key": "sk_unit_fake"}
    with pytest.raises(SecretsError):
        decrypt_secrets(load_cipher(new, tmp_path), sealed)
    assert masked_input({"prompt": "p"}, ["api_key"]) == {"prompt": "p", "api_key": MASK}


def test_a_missing_key_is_an_error_and_a_written_one_is_private_and_reused(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match=r"no secrets key.*genqueue migrate"):
        load_cipher(None, tmp_path)  # never silently made: it would not open sealed jobs
    assert not (tmp_path / "secrets.key").exists()
    write_key_file(tmp_path)
    a = load_cipher(None, tmp_path)
    token = encrypt_secrets(a, {"api_key": "x"})
    assert (tmp_path / "secrets.key").stat().st_mode & 0o077 == 0
    assert decrypt_secrets(load_cipher(None, tmp_path), token) == {"api_key": "x"}
    with pytest.raises(FileExistsError):
        write_key_file(tmp_path)  # never overwritten


def test_ids_sort_by_creation() -> None:
    ids = [new_id() for _ in range(50)]
    assert len(set(ids)) == 50 and all(len(i) == 32 for i in ids)
    assert ids[0][:12] <= ids[-1][:12]


def test_jigsawstack_validation_names_fields() -> None:
    errs = validate_jigsawstack({"prompt": "", "aspect_ratio": "7:3", "steps": 91, "output_format": "gif"})
    fields = {e.field for e in errs}
    assert fields == {"input.prompt", "input.api_key", "input.aspect_ratio", "input.steps", "input.output_format"}
    assert validate_jigsawstack({"prompt": "x" * 5000, "api_key": "k", "steps": 1}) == []


def test_job_request_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JobRequest(input={}, model="a/b", deployment="c/d")
    with pytest.raises(ValueError, match="latest"):
        JobRequest(input={}, version="a/b:latest")
    assert JobRequest(input={}, version="a/b:" + "0" * 64).model_name == "a/b"


def test_a_removed_setting_still_set_gets_one_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("GENQUEUE_POLL_BY_PAGE", "true")
    env_file = tmp_path / ".env"
    env_file.write_text("GENQUEUE_STUCK_AFTER=10\n")
    with caplog.at_level("WARNING", logger="genqueue.core.settings"):
        s = load_settings(_env_file=env_file)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert warned[0].startswith("GENQUEUE_POLL_BY_PAGE is set but no longer read: list-page refreshing was removed")
    assert warned[1].startswith("GENQUEUE_STUCK_AFTER is set but no longer read: a step 30 s overdue")
    assert not hasattr(s, "poll_by_page") and not hasattr(s, "stuck_after")
