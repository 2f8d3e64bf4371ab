"""JSON webhooks (`json://`, `jsons://`) over keep-alive connections.

Apprise's `NotifyJSON` sends each message with `requests.request`, which builds a new
requests Session, looks up proxies, netrc and CA bundles in the environment, opens a new TCP
(and TLS) connection and closes it again: most of a webhook message's cost on a fast endpoint.
`KeepAliveJSON` is the same plugin with one difference: its `send` puts the same request on a
requests Session that belongs to the sending thread and lives as long as the thread, so the
connection to the endpoint stays open from one message to the next. Everything a stock
`NotifyJSON` decides is kept: headers (the User-Agent and the `+Header=value` overrides of the
URL), the payload (with `:key=value` extras and remapping), `-param=value` query parameters,
method, basic auth, certificate checks, connect and read timeouts, redirects, throttle, and the
same log lines and return values. A message with attachments goes through the stock `send`.

Only `post.py` puts services on this class (see `keep_alive`); Apprise's plugin registry is left
as it is, so any other Apprise user in the process keeps stock `json://`.
"""

import logging
import threading
from json import dumps
from typing import Any

import requests
from apprise import NotifyType
from apprise.plugins.base import NotifyBase
from apprise.plugins.custom_json import JSONPayloadField, NotifyJSON
from apprise.utils.sanitize import sanitize_payload

# One requests Session per thread. A Session is not meant to be shared between threads, and
# the post office already gives each delivery thread its own Apprise objects; a thread sends
# one message at a time, so its Session's pool holds one open connection per endpoint. When
# the thread ends its locals go, and urllib3 closes a pool's connections as the pool goes.
# A connection the endpoint has closed meanwhile (its idle timeout) is noticed by urllib3
# before the next request and replaced.
_mine = threading.local()

# What one endpoint's requests share, prepared once per thread: the request up to its body,
# and the settings read from the environment.
_Ready = tuple[requests.PreparedRequest, dict[str, Any]]


def _request(
    method: str,
    url: str,
    *,
    data: str,
    params: dict[str, str],
    headers: dict[str, str],
    auth: tuple[Any, Any] | None,
    verify: bool,
    timeout: tuple[float, float],
    allow_redirects: bool,
) -> requests.Response:
    """`requests.request(...)` with these arguments, on this thread's Session.

    These are the steps of `Session.request` (a Request prepared by the Session, with its
    default headers and netrc credentials when there are none; `merge_environment_settings`
    for proxies, `no_proxy` and `REQUESTS_CA_BUNDLE`; `send`, which follows redirects), with
    two of them done once per thread and endpoint rather than for every message, since their
    inputs do not change between an endpoint's messages:

    - the prepared request: a copy of the first message's gets the next message's body
      (`prepare_body` sets the body and its Content-Length, in place), so URL, query, headers
      and auth are the ones `prepare_request` made, in the same order;
    - the environment settings: reading them walks every environment variable several times
      and took a third of a message's time. A running process's environment does not
      change, and delivery threads last one dispatch pass.

    A response's cookies last for that message only, as with `requests.request`."""
    session: requests.Session | None = getattr(_mine, "session", None)
    if session is None:
        session = _mine.session = requests.Session()
        _mine.ready = {}
    ready: dict[tuple[Any, ...], _Ready] = _mine.ready
    key = (method, url, tuple(params.items()), tuple(headers.items()), auth, verify)
    if key in ready:
        template, settings = ready[key]
        prepared = template.copy()
        prepared.prepare_body(data, None)
    else:
        prepared = session.prepare_request(
            requests.Request(
                method=method.upper(),
                url=url,
                headers=headers,
                data=data or {},
                params=params or {},
                auth=auth,
            )
        )
        settings = session.merge_environment_settings(prepared.url or "", {}, None, verify, None)
        ready[key] = prepared.copy(), settings
    try:
        return session.send(
            prepared,
            timeout=timeout,
            allow_redirects=allow_redirects,
            **dict(settings, proxies=dict(settings["proxies"])),
        )
    finally:
        session.cookies.clear()


class KeepAliveJSON(NotifyJSON):  # type: ignore[no-untyped-call]
    """Apprise's JSON webhook plugin, sending through this thread's keep-alive Session.

    It adds no state of its own, so an instance Apprise built as `NotifyJSON` can be turned
    into one in place (`keep_alive`), keeping its URL, tags, timeouts and asset."""

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: NotifyType = NotifyType.INFO,
        attach: Any = None,
        **kwargs: Any,
    ) -> bool:
        """What `NotifyJSON.send` does, step for step, but on this thread's Session."""
        if attach and self.attachment_support:
            # Notices carry no attachments; one that does gets the stock behaviour.
            return bool(super().send(body, title, notify_type, attach, **kwargs))  # type: ignore[no-untyped-call]

        headers = {
            "User-Agent": self.app_id,
            "Content-Type": "application/json",
        }
        headers.update(self.headers)

        payload: dict[str, Any] = {
            JSONPayloadField.VERSION: self.json_version,
            JSONPayloadField.TITLE: title,
            JSONPayloadField.MESSAGE: body,
            JSONPayloadField.ATTACHMENTS: [],
            JSONPayloadField.MESSAGETYPE: notify_type.value,
        }
        # The URL's `:key=value` entries, applied as the stock plugin applies them (the same
        # statements: `:title=title` removes the field there, and so it does here).
        for key, value in self.payload_extras.items():
            if key in payload:
                if not value:
                    del payload[key]  # `:key=` drops a field
                else:
                    payload[value] = payload[key]  # `:key=name` renames it
                    del payload[key]
            else:
                payload[key] = value  # `:name=value` adds one

        auth = (self.user, self.password) if self.user else None
        url = f"{'https' if self.secure else 'http'}://{self.host}"
        if isinstance(self.port, int):
            url += f":{self.port}"
        url += self.fullpath

        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(f"JSON POST URL: {url} (cert_verify={self.verify_certificate!r})")
            self.logger.debug("JSON Payload: %s", sanitize_payload(payload))

        self.throttle()  # type: ignore[no-untyped-call]

        try:
            r = _request(
                str(self.method),
                url,
                data=dumps(payload),
                params=self.params,
                headers=headers,
                auth=auth,
                verify=self.verify_certificate,
                timeout=self.request_timeout,
                allow_redirects=self.redirects,
            )
        except requests.RequestException as e:
            self.logger.warning(
                f"A Connection error occurred sending JSON notification to {self.host}."
            )
            self.logger.debug(f"Socket Exception: {e!s}")
            return False

        if r.status_code < 200 or r.status_code >= 300:
            status_str = NotifyBase.http_response_code_lookup(r.status_code)  # type: ignore[no-untyped-call]
            self.logger.warning(
                "Failed to send JSON %s notification: %s%serror=%s.",
                self.method,
                status_str,
                ", " if status_str else "",
                r.status_code,
            )
            self.logger.debug("Response Details:\r\n%r", (r.content or b"")[:2000])
            return False

        self.logger.info("Sent JSON %s notification.", self.method)
        return True


def keep_alive(service: Any) -> Any:
    """`service`, sending over keep-alive connections when it is a stock JSON webhook.

    Apprise builds services from the operator's config through its process-wide plugin
    registry; replacing `json://` there would change it for every Apprise user in the
    process. Instead the post office passes each service it takes from the config through
    here: a stock `NotifyJSON` (exactly that class, not some other subclass) becomes a
    `KeepAliveJSON`, which has the same fields and adds none, and anything else is returned
    as it is."""
    if type(service) is NotifyJSON:
        service.__class__ = KeepAliveJSON
    return service


def sole_webhook(box: Any) -> Any:
    """The webhook in `box` (an Apprise object) when calling its `notify` directly does
    what `box.notify(body=..., title=..., body_format=...)` does, else None.

    `Apprise.notify` is general: tag chains and priorities, retries, deadlines, optional
    services, escapes and emojis, a result with logs and a privacy URL for every service. Its
    bookkeeping costs a webhook message a fifth of its time. For an Apprise object holding
    one service, on an asset without a deadline (the caller's to ensure: the post office's
    chat asset has service_timeout=0, and a config cannot change that), what it does comes
    down to the service's own `notify` (which resolves the output format, applies the
    payload cap, converts the body and sends) when nothing else is asked for:

    - the service is a `KeepAliveJSON` (not some other class, whose `notify` is not known);
    - it is not optional (where a failure counts as a success) and has no retries;
    - neither the service's emojis nor the Apprise object's escapes are switched on (those
      are applied by `Apprise.notify` before the service sees the body).

    Anything else goes through `Apprise.notify` as before."""
    services = list(box)
    if len(services) != 1:
        return None
    service = services[0]
    if (
        type(service) is not KeepAliveJSON
        or service.optional
        or service.retry
        or service.interpret_emojis
        or box.asset.interpret_escapes
    ):
        return None
    return service


def notify(service: Any, *, body: str, title: str, body_format: Any) -> str:
    """`service.notify(...)` for a service `sole_webhook` returned: "" when sent, else why
    not in the words `Apprise.notify`'s result uses ("JSON: failure"); an exception raised
    in the service is a failure, as there."""
    try:
        sent = service.notify(body=body, title=title, body_format=body_format)
    except Exception as exc:
        service.logger.warning(
            "Notification service '%s' raised an exception.", service.service_name
        )
        service.logger.debug("Notification Exception: %s", exc)
        sent = False
    return "" if sent else f"{service.service_name}: failure"
