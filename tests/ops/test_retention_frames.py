"""Retention kind ``frames``: frame recordings are deleted after ``days.frames`` days (never
gzipped again: they are zstd already); other kinds' policies do not touch them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from engine.config import RetentionConfig
from engine.ops.retention import apply_retention, plan_retention

TODAY = dt.date(2026, 3, 20)


def _frames(records: Path, *days: dt.date) -> list[Path]:
    d = records / "frames"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for day in days:
        p = d / f"frames_{day.isoformat()}.zst"
        p.write_bytes(b"\x28\xb5\x2f\xfd")
        out.append(p)
    return out


def test_frames_older_than_their_policy_are_deleted(tmp_path: Path) -> None:
    old, kept, today = _frames(tmp_path, TODAY - dt.timedelta(days=4),
                               TODAY - dt.timedelta(days=2), TODAY)
    cfg = RetentionConfig(days={"frames": 3})
    plan = plan_retention(tmp_path, cfg, TODAY, now=0.0)
    assert [(a.action, a.path, a.kind) for a in plan.actions] == [("delete", old, "frames")]
    assert not any("frames" in w for w in plan.warnings)  # a known kind, not a typo
    result = apply_retention(plan, dry_run=False)
    assert result.ok and not old.exists() and kept.exists() and today.exists()


def test_the_default_keeps_frames_14_days(tmp_path: Path) -> None:
    (p13, p15) = _frames(tmp_path, TODAY - dt.timedelta(days=13), TODAY - dt.timedelta(days=15))
    plan = plan_retention(tmp_path, RetentionConfig(), TODAY, now=0.0)
    assert [a.path for a in plan.actions] == [p15]


def test_a_symlinked_frames_dir_is_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    _frames(elsewhere, TODAY - dt.timedelta(days=400))
    rec = tmp_path / "records"
    rec.mkdir()
    (rec / "frames").symlink_to(elsewhere / "frames")
    plan = plan_retention(rec, RetentionConfig(days={"frames": 1}), TODAY, now=0.0)
    assert plan.actions == ()
