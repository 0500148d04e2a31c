"""Ingest settings: validation, and the fingerprint of the settings that decide the output."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from docrerank.pages import IngestSettings, OcrMode


def test_defaults():
    settings = IngestSettings()
    assert (settings.dpi, settings.max_side, settings.ocr, settings.min_text_chars) == (
        150,
        2048,
        OcrMode.AUTO,
        40,
    )
    assert settings.output_settings() == {
        "dpi": 150,
        "max_side": 2048,
        "ocr": "auto",
        "min_text_chars": 40,
        "ocr_dpi": 300,
        "ocr_max_side": 4000,
        "ocr_lang": "eng",
    }


@pytest.mark.parametrize(
    "changed",
    [{"dpi": 100}, {"max_side": 1024}, {"ocr": "never"}, {"min_text_chars": 10}, {"ocr_lang": "deu"}],
)
def test_output_settings_change_the_fingerprint(changed):
    assert IngestSettings(**changed).fingerprint() != IngestSettings().fingerprint()


@pytest.mark.parametrize(
    "changed",
    [{"password": "pw"}, {"pages_per_unit": 3}, {"ocr_timeout_s": 5.0}, {"max_image_pixels": 10}],
)
def test_other_settings_keep_the_fingerprint(changed):
    assert IngestSettings(**changed).fingerprint() == IngestSettings().fingerprint()


@pytest.mark.parametrize(
    "bad",
    [
        {"dpi": 10},
        {"dpi": 1200},
        {"max_side": 100},
        {"ocr": "sometimes"},
        {"pages_per_unit": 0},
        {"colour": 1},
    ],
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        IngestSettings(**bad)


def test_the_password_is_not_shown():
    settings = IngestSettings(password="hunter2")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.output_settings())
