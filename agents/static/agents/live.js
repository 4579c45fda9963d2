/*
 * The live admin's glue around htmx and its SSE extension (agents/static/agents/vendor/).
 *
 * The pages declare what is live in their markup: an element with `sse-connect` opens the event stream, and each
 * part with `hx-get` + `hx-trigger="sse:<event type> ..."` fetches itself again when such an event arrives. This
 * script adds what markup cannot say:
 * - the connection's state in `.live-status` ("Live" / "Reconnecting…"), shown only with JavaScript on;
 * - on a run's page, the text of an LLM call as it streams (`llm.delta` events: {run_id, index, text}), in
 *   #run-llm-live until the step is recorded (`run.step` with that index) or the run ends;
 * - on the runs list, the selection: the list holds still while runs are selected (it catches up once the selection
 *   is cleared), and the checkboxes of a refreshed list keep working (Django's actions script binds to the rows it
 *   saw at load).
 * With JavaScript off none of this runs and the pages are static.
 */
'use strict';
{
    const FINAL = ['run.succeeded', 'run.failed', 'run.cancelled'];

    function setStatus(region, text, state) {
        const status = region && region.querySelector('.live-status');
        if (!status) { return; }
        status.hidden = false;
        status.textContent = text;
        status.dataset.state = state;
    }

    document.addEventListener('htmx:sseOpen', function(event) {
        const region = event.target.closest('.live-region');
        setStatus(region, 'Live: this updates itself', 'open');
        if (region && region.id === 'run-live') { followDeltas(region, event.detail.source); }
    });
    document.addEventListener('htmx:sseError', function(event) {
        setStatus(event.target.closest('.live-region'), 'Reconnecting…', 'error');
    });

    // --- A run's page: the text of the LLM call in flight. ---
    function followDeltas(region, source) {
        if (source.__syndarixDeltas) { return; }
        source.__syndarixDeltas = true;
        const panel = document.getElementById('run-llm-live');
        if (!panel) { return; }
        const text = panel.querySelector('.run-llm-live-text');
        const step = panel.querySelector('.run-llm-live-step');
        let index = null;
        const close = function() { panel.hidden = true; text.textContent = ''; index = null; };
        source.addEventListener('llm.delta', function(message) {
            const delta = JSON.parse(message.data);
            const data = delta.data || delta;
            if (String(data.run_id) !== region.dataset.runId) { return; }
            if (data.index !== index) { text.textContent = ''; index = data.index; }
            step.textContent = '(step #' + index + ')';
            text.textContent += data.text || '';
            panel.hidden = false;
        });
        source.addEventListener('run.step', function(message) {
            const event = JSON.parse(message.data);
            if (index !== null && (event.data || {}).index >= index) { close(); }
        });
        // A finished run changes no more: the page stops listening once its last fragments are fetched.
        FINAL.forEach(function(type) {
            source.addEventListener(type, function() { close(); source.close(); setStatus(region, 'Finished: nothing here changes any more', 'closed'); });
        });
    }

    // --- The runs list: hold still while runs are selected; keep the checkboxes working after a refresh. ---
    function selected(list) { return list.querySelectorAll('input.action-select:checked').length; }

    document.addEventListener('htmx:confirm', function(event) {
        const list = event.target.closest('#live-run-results');
        if (list && selected(list)) {
            event.preventDefault();
            list.dataset.behind = 'true';
        }
    });

    function counter(list) {
        const boxes = list.querySelectorAll('input.action-select');
        const count = selected(list);
        const toggle = document.getElementById('action-toggle');
        const shown = document.querySelector('span.action-counter');
        if (toggle) { toggle.checked = boxes.length > 0 && count === boxes.length; }
        if (shown && window.interpolate && window.ngettext) {
            shown.textContent = interpolate(ngettext('%(sel)s of %(cnt)s selected', '%(sel)s of %(cnt)s selected',
                count), {sel: count, cnt: Number(shown.dataset.actionsIcnt)}, true);
        }
        const actions = document.querySelector('div.actions');
        if (actions) { actions.classList.toggle('selected', count > 0); }
        if (!count && list.dataset.behind) {
            delete list.dataset.behind;
            htmx.trigger(list, 'live:catchup');
        }
    }

    document.addEventListener('change', function(event) {
        const list = event.target.closest('#live-run-results');
        if (!list) { return; }
        if (event.target.id === 'action-toggle') {
            list.querySelectorAll('input.action-select').forEach(function(box) {
                box.checked = event.target.checked;
                box.closest('tr').classList.toggle('selected', box.checked);
            });
        } else if (event.target.classList.contains('action-select')) {
            event.target.closest('tr').classList.toggle('selected', event.target.checked);
        }
        window.setTimeout(function() { counter(list); }, 0);  // after Django's own handlers, on the first rows
    });

    document.addEventListener('htmx:afterSwap', function(event) {
        if (event.target.id !== 'live-run-results') { return; }
        const fresh = new DOMParser().parseFromString(event.detail.xhr.responseText, 'text/html');
        const total = fresh.querySelector('span.action-counter');
        const shown = document.querySelector('span.action-counter');
        if (total && shown) { shown.dataset.actionsIcnt = total.dataset.actionsIcnt; }
        counter(event.target);
    });
}
