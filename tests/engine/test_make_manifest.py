"""What the manifest says of the build's entries."""

from __future__ import annotations

from helpers.builds import build_recipe


def test_licence_terms_come_from_the_sources_in_the_mixture(ray_cluster, upstream, tmp_path):
    """A source left out with `take: 0` ("none stated") does not set the mixture's terms."""
    data_root, _ = upstream
    unused = "  - {source: llava_zh, name: zh, path: mine, file: train.jsonl, image_root: images, take: 0}\n"
    _, manifest = build_recipe(tmp_path, data_root, extra_sources=unused)
    assert manifest.licences["zh"] == "none stated"
    assert manifest.strictest_terms == "user-supplied components: under their owners' terms (not checked)"
