import TrickleRelaySupport

/// `GET /` on the client's endpoint: one page that shows, live, what arrives from the runners — every followed
/// session, the egress, the losses, and the telemetry itself (the envelope exactly as relayed). It reads only the
/// endpoint's own routes (`/v1/subscriptions`, `/metrics`, `/telemetry/stream`), embedded in the binary.
enum ClientLivePage {
    static let page = StaticPage(html: html, script: script, style: StaticPage.baseStyle)

    static let html = StaticPage.document(
        title: "TrickleRelay client",
        heading: "TrickleRelay client — what arrives from the runners",
        tokenLabel: "Stream token",
        content: #"""
            <section>
              <h2>Sessions <span id="session-count" class="muted"></span></h2>
              <table id="sessions">
                <thead><tr><th>Session</th><th>State</th><th class="number">Events</th><th class="number">Gaps</th><th class="number">Last seq</th><th>Events/s, last minute</th><th>Last problem</th></tr></thead>
                <tbody></tbody>
              </table>
            </section>
            <section class="row">
              <div class="panel"><h2>Egress</h2><dl id="egress"></dl></div>
              <div class="panel"><h2>Losses</h2><dl id="losses"></dl></div>
            </section>
            <section>
              <h2>Telemetry <span id="rate" class="muted"></span></h2>
              <div class="controls">
                <label>Session <select id="filter-session"><option value="">all</option></select></label>
                <label>Type <input id="filter-type" placeholder="data.type contains…"></label>
                <button id="pause" type="button">Pause</button>
                <button id="copy" type="button">Copy as JSONL</button>
                <span id="shown" class="muted"></span>
              </div>
              <table id="telemetry">
                <thead><tr><th>Time</th><th>Session</th><th>data.type</th><th>Envelope (open a row for all of it, byte for byte)</th></tr></thead>
                <tbody></tbody>
              </table>
            </section>
            """#
    )

    static let script = #"""
        'use strict';
        (() => {
          const KEEP = 500, SHOW = 200, POLL_MS = 2000, WINDOW_MS = 60000, RENDER_MS = 250;
          const { $, cell, plural } = page;
          let source = null, lastEventId = null;
          let paused = false, frozen = null, arrivedWhilePaused = 0;
          let events = [];             // newest last; trimmed to KEEP
          let received = 0, receivedBefore = 0, rateShown = 0;
          const eventCounts = new Map(); // subscription id -> [[time ms, events]] over the last minute
          const runnerLosses = { dropped: 0, refused: 0, lost: 0 };
          const sessions = new Set();
          const opened = new Set();
          let renderQueued = false;
          let egressFailures = [];

          function needToken() {
            if (source) { source.close(); source = null; }
            page.needToken('the client’s --stream-token-file or TRICKLE_RELAY_STREAM_TOKEN');
          }
          page.onToken = () => poll();

          function sparkline(points) {
            const svgNS = 'http://www.w3.org/2000/svg';
            const svg = document.createElementNS(svgNS, 'svg');
            svg.setAttribute('class', 'spark');
            svg.setAttribute('viewBox', '0 0 120 24');
            const rates = [];
            for (let i = 1; i < points.length; i++) {
              const seconds = (points[i][0] - points[i - 1][0]) / 1000;
              rates.push(seconds > 0 ? Math.max(0, points[i][1] - points[i - 1][1]) / seconds : 0);
            }
            const title = document.createElementNS(svgNS, 'title');
            const last = rates.length ? rates[rates.length - 1] : 0;
            title.textContent = last.toFixed(1) + ' events/s now';
            svg.appendChild(title);
            if (rates.length > 1) {
              const top = Math.max(...rates, 1);
              const line = document.createElementNS(svgNS, 'polyline');
              line.setAttribute('points', rates.map((rate, i) => (i * 120 / (rates.length - 1)).toFixed(1) + ',' + (23 - rate * 22 / top).toFixed(1)).join(' '));
              svg.appendChild(line);
            }
            return svg;
          }

          function renderSessions(list) {
            const now = Date.now();
            const body = document.createElement('tbody');
            for (const s of list.subscriptions || []) {
              const points = eventCounts.get(s.id) || [];
              points.push([now, s.events]);
              while (points.length && now - points[0][0] > WINDOW_MS) points.shift();
              eventCounts.set(s.id, points);
              const label = s.session_id || s.id;
              sessions.add(label);
              const row = document.createElement('tr');
              row.dataset.session = label;
              cell(row, label);
              cell(row, s.state + (s.end ? ' (' + s.end + ')' : ''), s.state === 'failed' ? 'problem' : '');
              cell(row, String(s.events), 'number');
              cell(row, String(s.gaps), s.gaps > 0 ? 'number loss' : 'number');
              cell(row, s.last_seq === undefined || s.last_seq === null ? '–' : String(s.last_seq), 'number');
              cell(row, '').appendChild(sparkline(points));
              cell(row, s.last_problem || s.connection_problem || '', 'problem');
              body.appendChild(row);
            }
            $('sessions').replaceChild(body, $('sessions').tBodies[0]);
            $('session-count').textContent = (list.total ?? 0) + ' followed' + ((list.total ?? 0) > (list.subscriptions || []).length ? ' (first ' + list.subscriptions.length + ' shown)' : '');
            const select = $('filter-session');
            for (const label of sessions) {
              if (![...select.options].some((option) => option.value === label)) select.add(new Option(label, label));
            }
          }

          function entries(target, items) {
            const list = document.createElement('dl');
            list.id = target;
            for (const [name, value, bad] of items) {
              const dt = document.createElement('dt');
              dt.textContent = name;
              const dd = document.createElement('dd');
              dd.textContent = String(value);
              if (bad) dd.className = 'loss';
              list.append(dt, dd);
            }
            $(target).replaceWith(list);
          }

          function renderMetrics(m) {
            const v = (name) => m.get(name) || 0;
            const items = [];
            const kinds = { metrics: 'HTTP metrics API', kafka: 'Kafka', otlp: 'OTLP logs', file: 'a file', log: 'the log (standard error)', null: 'nothing (null sink)' };
            const info = [...m.keys()].find((key) => key.startsWith('sink_info{'));
            const kind = info ? (info.match(/sink="([^"]*)"/) || [])[1] : undefined;
            items.push(['Sink', (kinds[kind] || kind || 'unknown') + (m.has('spool_bytes') ? ', through the disk spool' : '')]);
            items.push(['Telemetry handed to the sink', v('telemetry_total')]);
            items.push(['Batches the sink failed to take', v('sink_failures_total'), v('sink_failures_total') > 0]);
            for (const failure of egressFailures) {
              // In words, with since when: "metrics endpoint failing … — HTTP 401 … since 14:02 (12 failures)".
              const since = new Date(failure.since_unix_ms).toLocaleTimeString();
              items.push(['Failing', failure.name + ' — ' + failure.reason + ' since ' + since + ' (' + plural(failure.failures, 'failure') + ')', true]);
            }
            if (m.has('metrics_sent_total')) {
              items.push(['Sent (accepted by the API)', v('metrics_sent_total')]);
              items.push(['Rejected (400)', v('metrics_rejected_total'), v('metrics_rejected_total') > 0]);
              items.push(['Retries (errors, 429, 413)', v('metrics_retries_total')]);
              items.push(['Waiting to be sent', v('metrics_buffered')]);
              items.push(['Key rejected (401 answers)', v('metrics_unauthorized_total'), v('metrics_unauthorized_total') > 0]);
            }
            if (m.has('kafka_produced_total')) {
              items.push(['Acknowledged by the brokers', v('kafka_acknowledged_total')]);
              items.push(['Produced again after a failure', v('kafka_retried_total')]);
              items.push(['In flight', v('kafka_in_flight')]);
            }
            if (m.has('spool_bytes')) {
              items.push(['Spool', plural(v('spool_bytes'), 'byte') + ' in ' + plural(v('spool_segments'), 'segment file')]);
              items.push(['Refused by the spool (full or write failed)', v('spool_overflowed_total') + v('spool_write_failed_total'), v('spool_overflowed_total') + v('spool_write_failed_total') > 0]);
            }
            entries('egress', items);
            const malformed = v('malformed_lines_total') + v('non_object_lines_total') + v('telemetry_without_object_event_total');
            entries('losses', [
              ['Segments lost (no longer held by the server)', v('segments_lost_total'), v('segments_lost_total') > 0],
              ['Malformed lines skipped', malformed, malformed > 0],
              ['Oversize lines or segments skipped', v('oversize_total'), v('oversize_total') > 0],
              ['Dropped by runners (queue full), since this page opened', runnerLosses.dropped, runnerLosses.dropped > 0],
              ['Refused by runners (too large)', runnerLosses.refused, runnerLosses.refused > 0],
              ['Lost by runners (upload failed)', runnerLosses.lost, runnerLosses.lost > 0],
            ]);
          }

          async function poll() {
            if (page.state.authFailed) return;
            try {
              const [subscriptions, metrics, egress] = await Promise.all([page.get('/v1/subscriptions?limit=1000'), page.get('/metrics'), page.get('/v1/egress')]);
              if (subscriptions.ok) renderSessions(await subscriptions.json());
              if (egress.ok) egressFailures = (await egress.json()).failures || [];
              if (metrics.ok) renderMetrics(page.parseMetrics(await metrics.text(), 'trickle_relay_client_'));
              if (!source) openStream();
              page.setStatus('live', 'ok');
            } catch (error) {
              if (error instanceof page.Unauthorized) { needToken(); return; }
              page.setStatus('the client daemon is not answering — retrying', 'bad');
            }
          }

          function openStream() {
            const query = new URLSearchParams();
            if (page.state.token) query.set('jwt', page.state.token);
            if (lastEventId) query.set('last_event_id', lastEventId); else query.set('backlog', String(KEEP));
            const text = query.toString();
            source = new EventSource('/telemetry/stream' + (text ? '?' + text : ''));
            source.addEventListener('telemetry', (event) => {
              lastEventId = event.lastEventId || lastEventId;
              received++;
              let session = '', type = '';
              try {
                const data = JSON.parse(event.data).data;
                if (data && typeof data === 'object') {
                  session = data.session_id === undefined ? '' : String(data.session_id);
                  type = data.type === undefined ? '' : String(data.type);
                  if (type === 'telemetry_dropped') {
                    for (const key of ['dropped', 'refused', 'lost']) if (typeof data[key] === 'number') runnerLosses[key] += data[key];
                  }
                }
              } catch (error) {
                type = '(not JSON)';
              }
              events.push({ id: event.lastEventId, time: new Date(), session, type, raw: event.data });
              if (events.length > 2 * KEEP) events = events.slice(-KEEP);
              if (paused) arrivedWhilePaused++;
              queueRender();
            });
            source.addEventListener('error', () => {
              // The browser reconnects by itself (with Last-Event-ID); a refused stream is closed and reopened by the next poll.
              if (source && source.readyState === EventSource.CLOSED) { source.close(); source = null; }
              page.setStatus('stream interrupted — reconnecting', 'bad');
            });
            source.addEventListener('open', () => page.setStatus('live', 'ok'));
          }

          function visible() {
            if (paused && frozen) return frozen;
            const session = $('filter-session').value;
            const type = $('filter-type').value.trim();
            const kept = events.slice(-KEEP);
            const shown = [];
            for (let i = kept.length - 1; i >= 0; i--) {
              const event = kept[i];
              if (session && event.session !== session) continue;
              if (type && !event.type.includes(type)) continue;
              shown.push(event);
            }
            return shown;
          }

          function queueRender() {
            if (renderQueued) return;
            renderQueued = true;
            setTimeout(() => { renderQueued = false; renderTelemetry(); }, RENDER_MS);
          }

          function renderTelemetry() {
            const shown = visible();
            const body = document.createElement('tbody');
            for (const event of shown.slice(0, SHOW)) {
              const row = document.createElement('tr');
              row.className = 'event';
              row.dataset.id = event.id;
              cell(row, event.time.toLocaleTimeString());
              cell(row, event.session);
              cell(row, event.type);
              cell(row, event.raw.slice(0, 200), 'preview');
              body.appendChild(row);
              if (opened.has(event.id)) {
                const detail = document.createElement('tr');
                const td = document.createElement('td');
                td.colSpan = 4;
                const pre = document.createElement('pre');
                pre.className = 'envelope';
                pre.textContent = event.raw;
                td.appendChild(pre);
                detail.appendChild(td);
                body.appendChild(detail);
              }
            }
            $('telemetry').replaceChild(body, $('telemetry').tBodies[0]);
            $('shown').textContent = paused
              ? 'paused: ' + shown.length + ' shown, ' + arrivedWhilePaused + ' arrived since'
              : 'newest ' + Math.min(shown.length, SHOW) + ' of the last ' + Math.min(events.length, KEEP) + ' kept; redrawn at most 4 times a second' + (rateShown > 50 ? ' (sampled: at this rate most events are never drawn)' : '');
          }

          $('telemetry').addEventListener('click', (event) => {
            const row = event.target.closest('tr.event');
            if (!row) return;
            if (opened.has(row.dataset.id)) opened.delete(row.dataset.id); else opened.add(row.dataset.id);
            renderTelemetry();
          });
          $('filter-session').addEventListener('change', renderTelemetry);
          $('filter-type').addEventListener('input', renderTelemetry);
          $('pause').addEventListener('click', () => {
            paused = !paused;
            frozen = paused ? visible() : null;
            arrivedWhilePaused = 0;
            $('pause').textContent = paused ? 'Resume' : 'Pause';
            renderTelemetry();
          });
          $('copy').addEventListener('click', async () => {
            const text = visible().map((event) => event.raw).join('\n') + '\n';
            try {
              await navigator.clipboard.writeText(text);
            } catch (error) {
              const area = document.createElement('textarea');
              area.value = text;
              document.body.appendChild(area);
              area.select();
              document.execCommand('copy');
              area.remove();
            }
            $('shown').textContent = 'copied ' + visible().length + ' envelopes as JSONL';
          });

          setInterval(() => {
            rateShown = (received - receivedBefore) * 1000 / POLL_MS;
            receivedBefore = received;
            $('rate').textContent = rateShown.toFixed(0) + ' events/s';
            poll();
          }, POLL_MS);
          poll();
        })();

        """#
}
