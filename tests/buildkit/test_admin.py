"""The agent-template admin and its Playground page, through the test client."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from agents.models import AgentInstance, AgentRun, AgentTypeRevision
from buildkit.overlay import OVERRIDE_HINT
from tests import factories
from tests.buildkit.conftest import embed

pytestmark = pytest.mark.django_db


#: The "Run in playground" button and an instruction.
RUN = {"action": "run", "instruction": "Try it"}


def project_of(user):
    """A project owned by ``user`` in a workspace where ``user`` is an operator (where staff run drafts)."""
    project = factories.ProjectFactory(owner=user)
    factories.MembershipFactory(workspace=project.workspace, user=user, role="operator")
    return project


def playground_url(agent_type):
    return reverse("admin:buildkit_agenttemplate_playground", args=[agent_type.pk])


@pytest.fixture
def admin_client_for():
    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def staff_admin(staff, admin_client_for):
    return admin_client_for(staff)


def test_changelist_lists_templates_with_their_latest_version(staff_admin, agent_type, commit, template,
                                                              django_assert_max_num_queries):
    commit(agent_type, template)
    commit(agent_type, template)
    factories.AgentTypeFactory(name="Blank")
    with django_assert_max_num_queries(12):
        response = staff_admin.get(reverse("admin:buildkit_agenttemplate_changelist"))
    assert response.status_code == 200
    content = response.content.decode()
    assert agent_type.name in content and "v2" in content and "Playground" in content


def test_changelist_search(staff_admin, agent_type):
    factories.AgentTypeFactory(name="Unrelated")
    response = staff_admin.get(reverse("admin:buildkit_agenttemplate_changelist") + f"?q={agent_type.slug}")
    assert agent_type.name in response.content.decode() and "Unrelated" not in response.content.decode()


def test_opening_a_template_goes_to_its_playground(staff_admin, agent_type):
    response = staff_admin.get(reverse("admin:buildkit_agenttemplate_change", args=[agent_type.pk]))
    assert response.status_code == 302 and response["Location"] == playground_url(agent_type)


def test_templates_cannot_be_added_or_deleted_here(staff_admin, agent_type):
    assert staff_admin.get(reverse("admin:buildkit_agenttemplate_add")).status_code == 403
    assert staff_admin.get(reverse("admin:buildkit_agenttemplate_delete", args=[agent_type.pk])).status_code == 403


def test_playground_page_shows_the_kit_the_draft_the_hints_and_the_history(staff_admin, agent_type, commit,
                                                                           template):
    commit(agent_type, {"llm": {"model": "first"}}, "first")
    commit(agent_type, template, "second")
    response = staff_admin.get(playground_url(agent_type))
    assert response.status_code == 200
    content = response.content.decode()
    for text in ("Playground build kit", "Removed on commit", "Platform tools", "Embedded tools",
                 "Embedded skills", "Sandbox permissions", "find_capabilities", "__sx__request_input",
                 "__sx__getting_started", "execute_code", "Run in playground", "Commit as v3", "Revision history",
                 "Diff from v1", "/llm/model"):
        assert text in content, text
    assert 'name="build_kit" id="id_build_kit" checked' in content
    # the draft starts from the latest revision
    draft_text = response.context["form"].initial["draft"]
    assert json.loads(draft_text) == template
    assert draft_text.index('"instructions"') < draft_text.index('"llm"') < draft_text.index('"tools"')
    # the user's denied write_files is overridden by the kit: the hint is shown beside it
    assert response.context["overrides"][0]["path"] == "sandbox.permissions.write_files"
    assert OVERRIDE_HINT in content


def test_playground_of_a_type_without_revisions_starts_from_a_starter(staff_admin, agent_type):
    response = staff_admin.get(playground_url(agent_type))
    assert response.status_code == 200
    assert "no revision yet" in response.content.decode()
    assert "Commit as v1" in response.content.decode()


def test_switching_the_kit_off_removes_the_hints(staff_admin, agent_type, template):
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(template), "action": "validate"})
    assert response.status_code == 200
    assert response.context["build_kit_on"] is False
    assert response.context["overrides"] == []
    assert "The kit is off" in response.content.decode()


def test_invalid_json_and_schema_errors_are_shown(staff_admin, agent_type):
    response = staff_admin.post(playground_url(agent_type), {"draft": "{oops", "build_kit": "on",
                                                             "action": "validate"})
    assert "Not valid JSON" in response.content.decode()
    draft = {"llm": {"model": ""}, "tools": [{"type": "platform", "op": "nope"}]}
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(draft), "build_kit": "on",
                                                             "action": "validate"})
    errors = dict(response.context["draft_errors"])
    assert set(errors) == {"template.llm.model", "template.tools.0.op"}
    assert "template.tools.0.op" in response.content.decode()


def test_run_in_playground_runs_the_draft_and_reuses_its_agent(staff_admin, staff, agent_type, template,
                                                                django_capture_on_commit_callbacks):
    """"Run in playground" queues a run of the draft with the instruction; clicking again on the same draft reuses
    its playground agent (it used to spawn an idle agent per click and run nothing); a changed draft gets its own."""
    project = project_of(staff)
    data = {"draft": json.dumps(template), "build_kit": "on", "project": str(project.pk), "name": "trial",
            "action": "run", "instruction": "Summarize the open issues"}
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_admin.post(playground_url(agent_type), data)
    assert response.status_code == 200
    agent = AgentInstance.objects.get()
    assert agent.is_playground and agent.name == "trial" and agent.project == project
    assert agent.effective_template["sandbox"]["permissions"]["write_files"] == "allow"
    run = AgentRun.objects.get()
    assert (run.agent, run.instruction, run.requested_by) == (agent, "Summarize the open issues", staff)
    page = response.content.decode()
    assert "Queued a run of the draft on the playground agent" in page and "(spawned)" in page
    assert reverse("admin:agents_agentrun_change", args=[run.pk]) in page
    assert response.context["result"]["agent"] == agent and response.context["result"]["run"] == run
    assert not AgentTypeRevision.objects.exists()

    response = staff_admin.post(playground_url(agent_type), {**data, "instruction": "Again"})
    assert AgentInstance.objects.get() == agent and AgentRun.objects.filter(agent=agent).count() == 2
    assert "(reused)" in response.content.decode()

    changed = {**template, "instructions": {"agents_md": "Something else."}}
    staff_admin.post(playground_url(agent_type), {**data, "draft": json.dumps(changed)})
    assert AgentInstance.objects.count() == 2 and AgentRun.objects.count() == 3


def test_run_in_playground_needs_an_instruction(staff_admin, staff, agent_type, template):
    project = project_of(staff)
    response = staff_admin.post(playground_url(agent_type), {
        "draft": json.dumps(template), "project": str(project.pk), "action": "run", "instruction": "  ",
    })
    assert "Say what the run should do." in response.content.decode()
    assert not AgentInstance.objects.exists() and not AgentRun.objects.exists()


def test_the_playground_prefills_an_instruction(staff_admin, agent_type):
    from buildkit.admin import DEFAULT_INSTRUCTION

    assert staff_admin.get(playground_url(agent_type)).context["form"].initial["instruction"] == DEFAULT_INSTRUCTION


def test_run_with_the_kit_off_spawns_the_draft_as_is(staff_admin, staff, agent_type, template):
    project = project_of(staff)
    staff_admin.post(playground_url(agent_type), {"draft": json.dumps(template), "project": str(project.pk),
                                                  **RUN})
    assert AgentInstance.objects.get().effective_template == template


def test_run_needs_a_writable_project(staff_admin, agent_type, template):
    foreign = factories.ProjectFactory()
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(template), "build_kit": "on",
                                                             "project": str(foreign.pk), **RUN})
    assert "project" in response.context["form"].errors
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(template), **RUN})
    assert "Choose a project to run in." in response.content.decode()
    assert not AgentInstance.objects.exists()


def test_commit_stores_the_draft_without_the_kit(staff_admin, agent_type, template):
    response = staff_admin.post(playground_url(agent_type), {
        "draft": json.dumps(template), "build_kit": "on", "message": "from the admin", "action": "commit",
    })
    assert response.status_code == 302
    revision = AgentTypeRevision.objects.get()
    assert revision.template == template and revision.message == "from the admin" and revision.version == 1
    page = staff_admin.get(playground_url(agent_type))
    assert "Committed revision v1" in page.content.decode()


def test_commit_of_an_invalid_draft_writes_nothing(staff_admin, agent_type):
    draft = {"llm": {"model": ""}}
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(draft), "action": "commit"})
    assert response.status_code == 200
    assert "Not committed" in response.content.decode()
    assert not AgentTypeRevision.objects.exists()


def test_viewer_staff_can_run_but_not_commit(admin_client_for, agent_type, template):
    viewer = factories.UserFactory(username="viewer-staff", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agenttype", content_type__app_label="agents"))
    client = admin_client_for(viewer)
    page = client.get(playground_url(agent_type))
    assert page.status_code == 200
    assert page.context["can_commit"] is False
    response = client.post(playground_url(agent_type), {"draft": json.dumps(template), "action": "commit"})
    assert "Committing needs staff status" in response.content.decode()
    assert not AgentTypeRevision.objects.exists()


def test_staff_without_agent_type_permissions_is_refused(admin_client_for, agent_type):
    nobody = factories.UserFactory(username="plain-staff", is_staff=True)
    assert admin_client_for(nobody).get(playground_url(agent_type)).status_code == 403


def test_non_staff_is_sent_to_the_login(admin_client_for, user, agent_type):
    response = admin_client_for(user).get(playground_url(agent_type))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_an_unknown_or_malformed_template_id_does_not_exist(staff_admin):
    import uuid

    for object_id in (uuid.uuid4(), "not-a-uuid"):  # "doesn't exist", as on every admin page; never a 500
        response = staff_admin.get(reverse("admin:buildkit_agenttemplate_playground", args=[object_id]), follow=True)
        assert response.redirect_chain[-1] == (reverse("admin:index"), 302)
        assert f"with ID “{object_id}” doesn’t exist" in response.content.decode()


# --- drafts the database cannot store are form errors, never 500 ------------------------------

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_a_draft_is_a_form_error_and_nothing_is_committed(staff_admin, agent_type, literal):
    draft = '{"llm": {"model": "m", "extras": {"temperature": LITERAL}}}'.replace("LITERAL", literal)
    response = staff_admin.post(playground_url(agent_type), {"draft": draft, "message": "x", "action": "commit"})
    assert response.status_code == 200
    assert f"{literal} is not valid JSON" in " ".join(response.context["form"].errors["draft"])
    assert not AgentTypeRevision.objects.exists()


def test_a_hugely_nested_draft_is_a_form_error(staff_admin, agent_type):
    draft = "[" * 100000 + "]" * 100000
    response = staff_admin.post(playground_url(agent_type), {"draft": draft, "action": "commit"})
    assert response.status_code == 200
    assert "nested too deeply" in " ".join(response.context["form"].errors["draft"])
    assert not AgentTypeRevision.objects.exists()


def _nested(levels):
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("draft", "message"),
    [
        ({"llm": {"model": "a\u0000b"}}, "must not contain NUL characters"),
        ({"llm": {"model": "m", "extras": {"a": _nested(70)}}}, "nested deeper than 64 levels"),
    ],
)
def test_a_draft_postgres_cannot_store_is_a_form_error(staff_admin, agent_type, draft, message):
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(draft), "action": "commit"})
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["draft"])
    assert not AgentTypeRevision.objects.exists()


# --- the instance config of a playground run ---------------------------------------------------

ENGINEER_SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string", "enum": ["gpt-4o", "gpt-4o-mini"]},
        "language": {"type": "string", "enum": ["python", "typescript"]},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "run_tests": {"type": "boolean", "default": True},
        "branch_prefix": {"type": "string", "pattern": "^[a-z]+/$"},
    },
    "required": ["model", "language", "branch_prefix"],
    "additionalProperties": False,
}


@pytest.fixture
def engineer(db):
    return factories.AgentTypeFactory(name="Engineer", slug="engineer", config_schema=ENGINEER_SCHEMA)


def test_config_is_prefilled_from_the_schema(staff_admin, engineer):
    response = staff_admin.get(playground_url(engineer))
    initial = json.loads(response.context["form"].initial["config"])
    # defaults, then an example for each required property: first enum value, else an empty value of its type
    assert initial == {"model": "gpt-4o", "language": "python", "run_tests": True, "branch_prefix": ""}
    assert 'name="config"' in response.content.decode()


def test_run_in_playground_passes_the_config(staff_admin, staff, engineer, template):
    project = project_of(staff)
    config = {"model": "gpt-4o-mini", "language": "typescript", "branch_prefix": "feat/"}
    response = staff_admin.post(playground_url(engineer), {
        "draft": json.dumps(template), "config": json.dumps(config), "project": str(project.pk), **RUN,
    })
    assert response.status_code == 200
    assert "Queued a run of the draft" in response.content.decode(), response.context["config_errors"]
    assert AgentInstance.objects.get().config == config


def test_config_errors_are_shown_by_path_and_nothing_runs(staff_admin, staff, engineer, template):
    project = project_of(staff)
    config = {"model": "gpt-5", "branch_prefix": "Feat"}
    response = staff_admin.post(playground_url(engineer), {
        "draft": json.dumps(template), "config": json.dumps(config), "project": str(project.pk), **RUN,
    })
    errors = dict(response.context["config_errors"])
    assert set(errors) == {"config", "config.model", "config.branch_prefix"}
    assert "'language' is a required property" in errors["config"][0]
    content = response.content.decode()
    assert "config.model" in content and "Not run" in content
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1]", "The config must be a JSON object."), ('{"t": NaN}', "NaN is not valid JSON"),
     ('{"a": "\\u0000"}', "must not contain NUL characters"), ("{oops", "Not valid JSON")],
)
def test_a_malformed_config_is_a_form_error(staff_admin, staff, engineer, template, text, message):
    project = project_of(staff)
    response = staff_admin.post(playground_url(engineer), {
        "draft": json.dumps(template), "config": text, "project": str(project.pk), **RUN,
    })
    assert message in " ".join(response.context["form"].errors["config"])
    assert not AgentInstance.objects.exists()


def test_an_empty_config_is_an_empty_object(staff_admin, staff, agent_type, template):
    project = project_of(staff)
    staff_admin.post(playground_url(agent_type), {
        "draft": json.dumps(template), "config": "  ", "project": str(project.pk), **RUN,
    })
    assert AgentInstance.objects.get().config == {}


def test_the_prefilled_config_of_every_demo_type_and_built_in_class_is_valid():
    from jsonschema import Draft202012Validator

    from agents.management.commands.seed_demo import AGENT_TYPES
    from agents.registry import registry
    from buildkit.admin import config_initial

    schemas = [spec["config_schema"] for spec in AGENT_TYPES] + [d["config_schema"] for d in registry.definitions()]
    assert len(schemas) >= 5
    for schema in schemas:
        assert list(Draft202012Validator(schema).iter_errors(config_initial(schema))) == [], schema


def test_run_from_the_prefilled_page_spawns(staff_admin, staff, template):
    from agents.management.commands.seed_demo import AGENT_TYPES

    spec = next(s for s in AGENT_TYPES if s["slug"] == "engineer")
    engineer = factories.AgentTypeFactory(slug="engineer", config_schema=spec["config_schema"])
    project = project_of(staff)
    page = staff_admin.get(playground_url(engineer))
    form = page.context["form"]
    response = staff_admin.post(playground_url(engineer), {
        "draft": form.initial["draft"], "config": form.initial["config"], "project": str(project.pk),
        "build_kit": "on", **RUN,
    })
    assert "Queued a run of the draft on the playground agent" in response.content.decode()
    assert AgentInstance.objects.get().config == {"language": "python"}


def test_kit_rows_show_an_embeds_display_name_else_its_slug():
    from buildkit.admin import _kit_rows

    overlay = {"tools": [{"name": "Ask", **embed("__sx__request_input")}, embed("__sx__request_connection")],
               "skills": [], "sandbox": {"permissions": {}}}
    rows = next(g for g in _kit_rows(overlay, {}, []) if g["title"] == "Embedded tools")["rows"]
    assert [(r["name"], r["detail"]) for r in rows] == [("Ask", "__sx__request_input"),
                                                        ("__sx__request_connection", "__sx__request_connection")]


@pytest.mark.parametrize(
    ("schema", "initial"),
    [
        ({}, {}),
        ({"type": "object"}, {}),
        ({"properties": {"a": {"type": ["null", "integer"], "minimum": 3}}, "required": ["a"]}, {"a": 3}),
        ({"properties": {"a": {"type": ["null"]}, "b": {"const": "x"}, "c": {"examples": [7]}},
          "required": ["a", "b", "c", "d"]}, {"a": None, "b": "x", "c": 7}),
        ({"properties": {"a": {}, "b": True, "c": {"type": "array"}}, "required": ["a", "b", "c"]}, {"c": []}),
    ],
)
def test_config_initial_reads_what_it_can_of_any_schema(schema, initial):
    from buildkit.admin import config_initial

    assert config_initial(schema) == initial


# --- Feedback where the eye is: every refusal is also a message at the top. ---


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_run_without_a_project_says_so_at_the_top(staff_admin, agent_type, template):
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(template), **RUN})
    assert page_messages(response) == ["Not run: choose a project to run in (under “Run in playground”)."]
    assert response.context["form"].errors["project"] == ["Choose a project to run in."]
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize(("action", "verb"), [("run", "run"), ("commit", "committed"), ("validate", "validated")])
def test_a_draft_that_is_not_json_says_so_at_the_top_and_claims_no_overrides(staff_admin, agent_type, action, verb):
    response = staff_admin.post(playground_url(agent_type), {"draft": "{not json", "build_kit": "on",
                                                             "action": action})
    assert page_messages(response) == [f"Not {verb}: correct the draft template (the errors are shown below)."]
    html = response.content.decode()
    assert "Not known: the draft is not valid JSON" in html and "None: the kit only adds to your draft" not in html
    assert not AgentTypeRevision.objects.exists() and not AgentInstance.objects.exists()


def test_committing_an_unchanged_draft_is_refused(staff_admin, agent_type, commit, template):
    commit(agent_type, template)
    response = staff_admin.post(playground_url(agent_type), {"draft": json.dumps(template), "message": "",
                                                             "action": "commit"})
    assert response.status_code == 200
    assert page_messages(response) == ["Not committed: the draft is the same as v1; change it first."]
    assert list(AgentTypeRevision.objects.values_list("version", flat=True)) == [1]
    changed = {**template, "instructions": {"agents_md": "Now different."}}
    staff_admin.post(playground_url(agent_type), {"draft": json.dumps(changed), "action": "commit"})
    assert sorted(AgentTypeRevision.objects.values_list("version", flat=True)) == [1, 2]
