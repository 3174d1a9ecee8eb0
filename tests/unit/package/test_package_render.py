"""The package templates (edgetl/package/templates/) and their one filler: exact markers, one pass."""

from __future__ import annotations

from importlib import resources

import pytest

from edgetl.package import render as render_module
from edgetl.package.render import render


def test_every_template_ships_and_has_only_well_formed_markers():
    names = sorted(p.name for p in resources.files("edgetl.package").joinpath("templates").iterdir() if p.name.endswith(".tmpl"))
    assert "predict.py.tmpl" in names and "README-android.md.tmpl" in names and "model_settings.h.tmpl" in names
    for name in names:
        text = render_module.template(name)
        assert text.endswith("\n"), name
        assert text.count("@@") == 2 * len(render_module._MARKER.findall(text)), f"{name} holds a stray @@"


def test_render_refuses_missing_and_unknown_values():
    with pytest.raises(KeyError, match="no value for"):
        render("labels.h.tmpl", version="1", count=2)
    with pytest.raises(KeyError, match="no marker for"):
        render("labels.h.tmpl", version="1", count=2, names="x", extra="y")


def test_values_are_inserted_once_not_filled_again():
    text = render("labels.h.tmpl", version="@@count@@", count=2, names='    "@@names@@"')
    assert "edgetl @@count@@ (" in text and '"@@names@@",' in text and "kCategoryCount = 2;" in text
