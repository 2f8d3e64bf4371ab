"""On the demo portfolio: notices of a late item finished, and of a gate sent back for rework,
after the monitor wrote them are not sent by the next dispatch; `notifications list --status
obsolete` shows why."""

import shutil
from pathlib import Path

from tests.conftest import DEMO_AS_OF as AS_OF
from tests.conftest import run_here
from tests.test_bridgebsr.test_cli import run_json

CASE, ITEM = "SME-2026-0008", "nda"
GATE_CASE, GATE = "IP-2025-0001", "council-approval"  # reminders to six council members


def test_notices_of_an_item_finished_before_dispatch_are_listed_obsolete_not_sent(
    demo_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    pending = run_json(home, "notifications", "list", "--status", "pending")
    nda, council = (
        sorted(r["id"] for r in pending if (r["case"], r["item"]) == pair)
        for pair in ((CASE, ITEM), (GATE_CASE, GATE))
    )
    assert nda, "the demo's monitor pass tells someone the NDA is late"
    assert len(council) > 1, "and reminds the council members of their vote"
    milestones = run_json(home, "case", "show", CASE)["milestones"]
    owner = next(m["owner"] for m in milestones if m["key"] == ITEM)
    done = run_here(home, "milestone", "complete", CASE, ITEM, "--by", owner)
    assert done.returncode == 0, done.stderr
    member = next(r["recipient"] for r in pending if r["id"] == council[0])
    rejected = run_here(
        home, "gate", "reject", GATE_CASE, GATE, "--by", member, "--comment", "redo"
    )
    assert rejected.returncode == 0, rejected.stderr

    said = run_here(home, "notifications", "dispatch", "--as-of", AS_OF)
    assert said.returncode == 0, said.stderr
    assert f"{len(nda) + len(council)} obsolete" in said.stdout
    why = {
        r["id"]: r["error"] for r in run_json(home, "notifications", "list", "--status", "obsolete")
    }
    rework = f"gate {GATE_CASE} {GATE} went back for rework: round 2 now"
    assert why == dict.fromkeys(nda, f"{CASE} {ITEM} is done") | dict.fromkeys(council, rework)
    sent = run_json(home, "notifications", "list", "--status", "sent")
    assert len(sent) == len(pending) - len(why)
    log = (home / "notifications.log").read_text(encoding="utf-8")
    assert f"{CASE}: {ITEM} " not in log and f"{GATE_CASE}: {GATE} " not in log
