"""The strictest terms of a mixture, from its components' licences."""

from __future__ import annotations

from dataprep.licences import strictest_terms
from dataprep.sources import registry


def test_the_most_restrictive_component_decides():
    licences = ["CC BY-NC 4.0", "GPL-3.0", "non-commercial, no redistribution"]
    assert strictest_terms(licences) == "no redistribution: the mixture may not be shared"
    assert strictest_terms(["CC BY-NC 4.0", "none stated"]) == "non-commercial use only"


def test_user_supplied_data_is_not_called_permissive():
    terms = strictest_terms([registry()["conversations"].licence])
    assert terms.startswith("user-supplied components")
    assert strictest_terms(["MIT"]) == "permissive"
