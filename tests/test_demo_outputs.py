"""What the demo clears before it runs (scripts/demo.py)."""
import scripts.demo as demo
import scripts.summary_page as summary_page


def test_the_demo_starts_without_an_earlier_runs_levels_and_figures(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    stale = out / "from_raw_ct" / "blocks" / "label" / "phantom_000_28.nii.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's T13")
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "old.png").write_bytes(b"png")
    kept = out / "phantom" / "summary.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    monkeypatch.setattr(demo, "stage_commands", lambda *a, **k: [])
    monkeypatch.setattr(summary_page, "build_page", lambda out: None)
    assert demo.main(["--output", str(out), "--no_progress"]) == 0
    assert not (out / "from_raw_ct").exists()
    assert not (out / "figures" / "old.png").exists()
    assert kept.is_file()
