"""The agent runtime: agents run on Celery workers.

``services`` (create, claim, park, cancel, decide, reap runs), ``executor`` (a run on a worker, with its
heartbeat), ``context`` (what an agent class sees: ``RunContext`` and the metered LLM client), ``loop`` (the
tool-calling loop), ``tools`` (the one registry of platform and client tools), ``tasks`` (the Celery tasks,
registered when the agents app is ready), ``trace``, and the API (``views``, ``serializers``, ``filtersets``,
``selectors``) and admin (``admin``, ``forms``) pieces. The models (``AgentRun``, ``AgentRunStep``,
``AgentRunRequest``) stay in ``agents.models``.
"""
