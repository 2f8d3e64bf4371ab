"""The pages of the partners' door: `routes`, the list `web.app.create_app` mounts beside the
door's own routes (link login, logout, health, stylesheet).

- `views.py`: My items (`/me`), a case's page (`/cases/{key}`) and the actions on it.
- `feeds.py`: the personal and partner calendar feeds (`/feeds/...`).
- `reports.py`: the stored weekly report's files (`/reports/{id}/{filename}`), to its readers."""

from starlette.routing import BaseRoute

from bridgebsr.web.pages import feeds, reports, views

routes: list[BaseRoute] = [*views.routes, *feeds.routes, *reports.routes]
