"""Every setting is documented: docs/settings.md is generated from the settings classes and kept current."""

from pathlib import Path

from controlplane.core.settings_doc import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_settings_doc_is_current():
    assert DOC.read_text() == render(), "run: python -m controlplane.core.settings_doc > docs/settings.md"


def test_every_setting_has_a_description():
    from builder.settings import BuilderSettings
    from controlplane.core.config import Settings

    for cls in (Settings, BuilderSettings):
        missing = [name for name, field in cls.model_fields.items() if not field.description]
        assert not missing, f"{cls.__name__} fields without a description: {missing}"
