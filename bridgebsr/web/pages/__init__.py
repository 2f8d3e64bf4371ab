"""The pages of the partners' door (My items, the case page, actions, feeds): `routes`, the
list `web.app.create_app` mounts beside the door's own routes (link login, logout, health,
stylesheet)."""

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
