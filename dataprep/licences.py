"""Which licence terms of a mixture are the strictest."""

from __future__ import annotations

# Most restrictive first: a mixture inherits the first terms whose markers any component has.
STRICTNESS = [
    (("no redistribution",), "no redistribution: the mixture may not be shared"),
    (("registration",), "registration required: each user must accept the publisher's terms"),
    (("gpl",), "copyleft (GPL-3.0): derived data must stay under the GPL"),
    (("non-commercial", "by-nc"), "non-commercial use only"),
    (("none stated",), "no licence stated for some components: check with their publishers"),
    (("user-supplied",), "user-supplied components: under their owners' terms (not checked)"),
]


def strictest_terms(licences: list[str]) -> str:
    lowered = [licence.lower() for licence in licences]
    for markers, terms in STRICTNESS:
        if any(marker in licence for marker in markers for licence in lowered):
            return terms
    return "permissive"
