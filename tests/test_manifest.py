"""utils.checkpoint.verify_manifest: one sha256 check for both manifest layouts of shipped weights
(the generators' and segmentation's ``files`` table, the radiograph's single-file entry)."""
from __future__ import annotations

import hashlib
import json

import pytest

from utils.checkpoint import verify_manifest
from utils.errors import UserError


@pytest.mark.parametrize("layout", ["files", "file"])
def test_changed_weights_are_refused_in_both_layouts(tmp_path, layout):
    w = tmp_path / "w.pth"
    w.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()

    def manifest(sha):
        entry = {"files": {"w.pth": {"sha256": sha}}} if layout == "files" else {"file": "w.pth", "sha256": sha}
        (tmp_path / "MANIFEST.json").write_text(json.dumps(entry))

    manifest(good)
    verify_manifest(w)
    manifest("0" * 64)
    with pytest.raises(UserError, match="sha256 differs"):
        verify_manifest(w)
    other = tmp_path / "other.pth"  # a file the manifest does not list is not checked
    other.write_bytes(b"x")
    verify_manifest(other)
