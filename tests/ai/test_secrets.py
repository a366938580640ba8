import pytest

from vdbnb.ai.secrets import luhn_ok, redact, scan

SECRETS = [
    ("export OPENAI_API_KEY=sk-proj-Q7fLm2XpR9tKc4VbN8wZ1aHd5Ey3Gu6J", "api_key", "sk-proj-"),
    ("aws_access_key_id = AKIAZ3MHQW7XK2PLR5TN", "api_key", "AKIAZ3MHQW7XK2PLR5TN"),
    ("remote: token ghp_x8Kd2LqP4mZ7vN1bR6tY9wC3sF5hJ0gA2eQu", "api_key", "ghp_"),
    ("SLACK_BOT_TOKEN=xoxb-4829301-99172635-Lq8ZpN2wX7vR4tKm", "api_key", "xoxb-"),
    ("client_secret: 7d9f2a41c08e4b6fa35e91d27c6b8f30", "api_key", "7d9f2a41"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dGhpc2lzYXNpZ25hdHVyZQ", "api_key", "eyJ"),
    ("password: Winter2024!x", "password", "Winter2024!x"),
    ("DB_PASSWORD=\"s3cr3t-P4ss\"", "password", "s3cr3t-P4ss"),
    ("postgres://app:hunter22pw@db.internal:5432/prod", "password", "hunter22pw"),
    ("Visa 4539 1488 0343 6467 exp 09/27", "credit_card", "4539 1488 0343 6467"),
    ("amex 3714-496353-98431", "credit_card", "3714-496353-98431"),
    ("Contact: maria.lopez+billing@acme-corp.co.uk today", "email", "maria.lopez+billing@acme-corp.co.uk"),
    # OCR and speech forms
    ("token: ghp_x8Kd2LqP4mZ7 vN1bR6tY9wC3sF5 hJ0gA2eQu", "api_key", "ghp_"),
    ("write to jane.doe @ example . com", "email", "jane.doe @ example . com"),
    ("my email is john dot smith at gmail dot com", "email", "john dot smith at gmail dot com"),
]


@pytest.mark.parametrize("text,label,part", SECRETS)
def test_finds_secrets(text, label, part):
    found = scan(text)
    assert any(f.label == label and part in f.match for f in found), found
    f = [f for f in found if f.label == label][0]
    assert text[f.start:f.end] == f.match and 0 < f.confidence <= 1


PROSE = [
    "The secret to a good meeting is a clear agenda and a short list of decisions.",
    "Our API key rotation policy requires new keys every ninety days.",
    "Forgot your password? Click the link to reset it.",
    "The password field is required.",
    "Order 1234 5678 9012 3456 shipped on Tuesday; call 555-123-4567.",
    "Version 2.14.3 build 20240115093012 passed all 4821 tests.",
    "I met Sarah at the conference and we talked about the launch.",
    "Set the token limit to 4096 and the temperature to 0.2.",
    "sk-this-is-just-a-slug-not-a-key",
    "Meet at 10:30 in room 4B, then lunch at noon.",
]


@pytest.mark.parametrize("text", PROSE)
def test_ordinary_text_is_clean(text):
    assert scan(text) == []


def test_luhn_and_redact():
    assert luhn_ok("4539148803436467") and not luhn_ok("4539148803436468")
    text = "key sk-proj-Q7fLm2XpR9tKc4VbN8wZ1aHd5Ey3Gu6J and mail bob@example.org"
    assert redact(text) == "key [api_key] and mail [email]"


def test_several_findings_in_order():
    text = "user bob@example.org password: Tr0ub4dor&3 card 4111-1111-1111-1111"
    assert [f.label for f in scan(text)] == ["email", "password", "credit_card"]
