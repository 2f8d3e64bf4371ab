"""The post office: rendering, delivery through Apprise, and dispatching the outbox."""
