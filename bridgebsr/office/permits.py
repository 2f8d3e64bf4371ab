"""Who may change a case's items, asked by the use cases themselves: the rule is
`rules.access.may_progress`; this module reads what it needs (the actor as a contact, the
case's team, its pilot leads) and refuses with one line.

System actors: the demo loader and imports (`SYSTEM_SOURCES`) record what their data says
happened and are not checked. On the CLI an address that is no contact's is the operator at
the store's own machine (`--by`, BRIDGEBSR_ACTOR or their login name) and is not checked
either. The web, the desk flows and the API always act as a contact (`PEOPLE_SOURCES`), and a
contact is always held to the rule, whatever the source."""

from collections.abc import Collection

from sqlalchemy import Connection

from bridgebsr.errors import IllegalTransition, NotFound
from bridgebsr.rules.access import CaseFacts, may_progress
from bridgebsr.rules.requests import case_leads
from bridgebsr.rules.rows import CaseRow, MilestoneRow
from bridgebsr.store import case_rows as store
from bridgebsr.store.people import load_directory
from bridgebsr.store.team import load_teams
from models import Source

# The office's own machinery, not a person: the demo loader and imports.
SYSTEM_SOURCES = frozenset({Source.DEMO, Source.IMPORT})
# Sources whose actor must be a contact: the web's signed-in person, the desk's `by`, the API.
PEOPLE_SOURCES = frozenset({Source.WEB, Source.FLOW, Source.API})


def check_may_progress(
    conn: Connection,
    case: CaseRow,
    milestone: MilestoneRow,
    action: str,
    email: str,
    source: Source,
    covering: Collection[int],
) -> None:
    """Refuse `email` acting from `source` on `milestone` unless they may
    (`rules.access.may_progress`; `covering`: whom they stand in for now)."""
    if source in SYSTEM_SOURCES:
        return
    try:
        person = store.contact_by_email(conn, email)
    except NotFound:
        if source in PEOPLE_SOURCES:
            raise
        return
    team = load_teams(conn, [case.id]).get(case.id, {})
    facts = CaseFacts(case.owner_id, case.lead_partner_id, case.kind, team, ())
    item_role = milestone.owner_role or None
    if may_progress(person, milestone.owner_id, facts, item_role=item_role, covering=covering):
        return
    directory = load_directory(conn)  # only when the cheaper answers said no
    leads = {p.id for p in case_leads(directory, case.lead_partner_id, case.kind, team)}
    if may_progress(person, milestone.owner_id, facts, item_role=item_role, leads=leads):
        return
    owner = directory.people.get(milestone.owner_id) if milestone.owner_id else None
    raise IllegalTransition(
        f"{person.email} may not {action} {milestone.key} of {case.key}: its owner "
        f"({owner.email if owner else 'none'}), their deputy while they are away, the case "
        "owner, the case team's holder of its role, a pilot lead of the case or the "
        "coordinator may"
    )
