"""`dataprep export`: one subcommand per layout; bad manifests end in one line, exit 2."""

from __future__ import annotations

import pytest

from dataprep.cli import main

from helpers.bridge_shards import manifest_leading_out


def test_the_export_group_names_every_trainer(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["export", "--help"])
    shown = capsys.readouterr().out
    assert stopped.value.code == 0 and all(
        kind in shown for kind in ("internvl", "llava", "llamafactory", "swift", "parquet")
    )
    with pytest.raises(SystemExit) as stopped:
        main(["export", "llava", "m.json"])
    assert stopped.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["export", "internvl", "m.json", "--out", "o", "--trainer", "v1_1"])
    assert stopped.value.code == 2 and "--trainer" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["../outside/mix-000000.tar", "absolute"])
def test_a_manifest_cannot_lead_an_export_out_of_its_folder(tmp_path, capsys, where):
    manifest_path = manifest_leading_out(tmp_path, where)
    assert main(["export", "llamafactory", str(manifest_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dataprep export llamafactory: error: ")
    assert "shards.0.path: Value error" in err and "inside the manifest's folder" in err
    assert main(["export", "parquet", str(tmp_path / "none.json"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataprep export parquet: error: cannot read manifest") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
