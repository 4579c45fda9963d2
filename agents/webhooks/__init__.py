"""Webhooks: workspace endpoints that receive the events outbox (``agents.events``) as Standard Webhooks.

- ``models``: ``WebhookEndpoint`` (a target URL, the event types it takes, its signing secret, its cursor in the
  outbox) and ``WebhookDelivery`` (one event sent to one endpoint: attempts, outcome, next attempt).
- ``services``: the writes (create, update, rotate the secret, enable, delete, redeliver).
- ``targets``: the SSRF rule (which addresses a target may resolve to) and the HTTP session that connects only to
  addresses it checked.
- ``dispatch``: the dispatcher that turns outbox events into deliveries and sends them, in order per endpoint.
- ``tasks``: the Celery task beat queues (and a commit that wrote events nudges).
"""
