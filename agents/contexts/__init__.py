"""Versioned shared contexts: append-only versions, reads at a version, rollback, diff, pins and pruning.

``services`` holds every business rule (the API, the admin, the runtime and the agents' tools call it);
``views``/``serializers``/``filtersets``/``urls`` are the REST API, ``admin`` the admin pages. The models
(``AgentContext``, ``AgentContextVersion``) stay in ``agents.models``.
"""
