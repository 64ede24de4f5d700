import TrickleRelaySupport

/// `GET /` on the runner agent's ingest API: whether telemetry flows, per session — queue depth, relayed,
/// dropped, refused, lost, and the writer's state — for an operator beside the GPU runner. It reads only
/// `GET /v1/sessions` and `/metrics` of the same API, embedded in the binary.
enum RunnerLivePage {
    static let page = StaticPage(html: html, script: script, style: StaticPage.baseStyle)

    static let html = StaticPage.document(
        title: "TrickleRelay runner agent",
        heading: "TrickleRelay runner agent — does telemetry flow?",
        tokenLabel: "Ingest token",
        content: #"""
            <section>
              <h2>Sessions <span id="session-count" class="muted"></span></h2>
              <table id="sessions">
                <thead><tr><th>Session</th><th>Events URL</th><th class="number">Queued</th><th class="number">Relayed</th><th class="number">Dropped</th><th class="number">Refused</th><th class="number">Lost</th><th class="number">Redactions</th><th>Writer</th></tr></thead>
                <tbody></tbody>
              </table>
            </section>
            <section class="row">
              <div class="panel"><h2>All sessions, ended ones included</h2><dl id="totals"></dl></div>
            </section>
            """#
    )

    static let script = #"""
        'use strict';
        (() => {
          const { $, cell, plural } = page;
          page.onToken = () => poll();

          function renderSessions(list) {
            const body = document.createElement('tbody');
            for (const s of list.sessions || []) {
              const t = s.telemetry || {};
              const row = document.createElement('tr');
              row.dataset.session = s.session_id;
              cell(row, s.session_id);
              cell(row, s.events_url);
              cell(row, String(t.queued_events ?? 0), 'number');
              cell(row, String(t.relayed ?? 0), 'number');
              for (const key of ['dropped', 'refused', 'lost']) cell(row, String(t[key] ?? 0), (t[key] ?? 0) > 0 ? 'number loss' : 'number');
              cell(row, String(t.redactions ?? 0), 'number');
              const writer = s.connection_problem
                ? 'failing: ' + s.connection_problem
                : (s.failed_segments > 0 ? plural(s.failed_segments, 'segment') + ' failed, ' : '') + plural(s.segments, 'segment') + ' uploaded';
              cell(row, writer, s.connection_problem || s.failed_segments > 0 ? 'problem' : '');
              body.appendChild(row);
            }
            $('sessions').replaceChild(body, $('sessions').tBodies[0]);
            $('session-count').textContent = (list.sessions || []).length + ' running';
          }
          function renderTotals(text) {
            const values = page.parseMetrics(text);
            const list = document.createElement('dl');
            list.id = 'totals';
            for (const [name, label, isLoss] of [
              ['trickle_relay_telemetry_relayed_total', 'Relayed', false],
              ['trickle_relay_telemetry_dropped_total', 'Dropped (queue full)', true],
              ['trickle_relay_telemetry_refused_total', 'Refused (too large)', true],
              ['trickle_relay_telemetry_lost_total', 'Lost (upload failed)', true],
            ]) {
              if (!values.has(name)) continue;
              const dt = document.createElement('dt');
              dt.textContent = label;
              const dd = document.createElement('dd');
              dd.textContent = String(values.get(name));
              if (isLoss && values.get(name) > 0) dd.className = 'loss';
              list.append(dt, dd);
            }
            $('totals').replaceWith(list);
          }
          async function poll() {
            if (page.state.authFailed) return;
            try {
              const [sessions, metrics] = await Promise.all([page.get('/v1/sessions'), page.get('/metrics')]);
              if (sessions.ok) renderSessions(await sessions.json());
              if (metrics.ok) renderTotals(await metrics.text());
              page.setStatus('live', 'ok');
            } catch (error) {
              if (error instanceof page.Unauthorized) { page.needToken('the agent’s --token-file or TRICKLE_RELAY_TOKEN'); return; }
              page.setStatus('the runner agent is not answering — retrying', 'bad');
            }
          }
          setInterval(poll, 2000);
          poll();
        })();

        """#
}
