import HTTPTypes
public import Hummingbird
import NIOCore

/// A page embedded in the binary (HTML, its script and its style as separate routes: no inline code, so the
/// Content-Security-Policy can allow only the page's own origin). Nothing is fetched from elsewhere.
public struct StaticPage: Sendable {
    public var html: String
    public var script: String
    public var style: String

    public init(html: String, script: String, style: String) {
        self.html = html
        self.script = script
        self.style = style
    }

    /// The routes the page is served on (`/`, `/ui/common.js`, `/ui/page.js`, `/ui/page.css`, and an empty `/favicon.ico`): they carry no data, so a token
    /// middleware lets them through (``BearerTokenMiddleware`` `openPaths`); the page asks for the token itself.
    public static let paths: Set<String> = ["/", "/ui/common.js", "/ui/page.js", "/ui/page.css", "/favicon.ico"]

    /// Only this origin, for everything: scripts, styles, requests (fetch and `EventSource`), images.
    public static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    /// Adds the page's three routes to `router`.
    public func add<Context: RequestContext>(to router: Router<Context>) {
        let html = ByteBuffer(string: self.html)
        let script = ByteBuffer(string: self.script)
        let style = ByteBuffer(string: self.style)
        let common = ByteBuffer(string: Self.commonScript)
        router.get("/") { _, _ in Self.response(html, type: "text/html; charset=utf-8") }
        router.get("ui/common.js") { _, _ in Self.response(common, type: "text/javascript; charset=utf-8") }
        router.get("ui/page.js") { _, _ in Self.response(script, type: "text/javascript; charset=utf-8") }
        router.get("ui/page.css") { _, _ in Self.response(style, type: "text/css; charset=utf-8") }
        // Browsers ask for it by themselves: answered, so it is neither a 401 nor a console error.
        router.get("favicon.ico") { _, _ in Response(status: .noContent) }
    }

    private static func response(_ body: ByteBuffer, type: String) -> Response {
        var headers: HTTPFields = [.contentType: type, .cacheControl: "no-cache"]
        headers[HTTPField.Name("Content-Security-Policy")!] = Self.contentSecurityPolicy
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: body))
    }

    /// A page's HTML: the head, the header with its status line, the token form (hidden until the endpoint asks for
    /// a token), `content`, then the shared and the page's own script.
    public static func document(title: String, heading: String, tokenLabel: String, content: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(title)</title>
        <link rel="stylesheet" href="/ui/page.css">
        </head>
        <body>
        <header><h1>\(heading)</h1><span id="status" class="status">connecting…</span></header>
        <section id="auth" hidden>
          <p id="auth-message"></p>
          <form id="token-form"><label>\(tokenLabel) <input id="token-input" type="password" autocomplete="off"></label> <button type="submit">Use this token</button></form>
        </section>
        \(content)
        <script src="/ui/common.js"></script>
        <script src="/ui/page.js"></script>
        </body>
        </html>

        """
    }

    /// The look both pages share (system fonts only: nothing is fetched).
    public static let baseStyle = """
        :root { color-scheme: light dark; --bad: #c62828; --ok: #2e7d32; --muted: #777; --line: #8884; }
        body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; }
        header { display: flex; align-items: baseline; gap: 1rem; border-bottom: 1px solid var(--line); }
        h1 { font-size: 1.25rem; } h2 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .2rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
        .status { font-weight: 600; } .status.ok { color: var(--ok); } .status.bad, .loss, .problem { color: var(--bad); }
        .loss { font-weight: 700; } .muted { color: var(--muted); }
        dl { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; margin: 0; }
        dt { color: var(--muted); } dd { margin: 0; font-variant-numeric: tabular-nums; }
        .row { display: flex; gap: 2rem; flex-wrap: wrap; } .panel { min-width: 18rem; }
        #auth { border: 2px solid var(--bad); padding: .5rem 1rem; margin: 1rem 0; }
        pre { white-space: pre-wrap; word-break: break-all; margin: 0; font-size: 12px; }
        tr.event { cursor: pointer; } tr.event:hover { background: #8882; }
        .controls { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; margin-bottom: .5rem; }
        svg.spark { width: 120px; height: 24px; } svg.spark polyline { fill: none; stroke: currentColor; stroke-width: 1.5; }
        .preview { font-family: ui-monospace, monospace; font-size: 12px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 48rem; }

        """

    /// What both pages' scripts share (loaded first, as `/ui/common.js`): the token — taken once from `?jwt=`,
    /// kept in memory only and removed from the address bar, or asked for — requests that carry it, the status
    /// line, and small DOM helpers. A page sets `page.onToken` to poll again once a token was entered.
    public static let commonScript = #"""
        'use strict';
        const page = (() => {
          const $ = (id) => document.getElementById(id);
          const state = { token: null, authFailed: false };
          const address = new URL(location.href);
          if (address.searchParams.has('jwt')) {
            state.token = address.searchParams.get('jwt');
            address.searchParams.delete('jwt');
            window.history.replaceState(null, '', address.pathname + address.search + address.hash);
          }
          class Unauthorized extends Error {}
          async function get(path) {
            const response = await fetch(path, { headers: state.token ? { Authorization: 'Bearer ' + state.token } : {}, cache: 'no-store' });
            if (response.status === 401) throw new Unauthorized('401');
            return response;
          }
          function setStatus(text, kind) {
            $('status').textContent = text;
            $('status').className = 'status ' + (kind || '');
          }
          // `where`: which flag or variable holds the token, for the message.
          function needToken(where) {
            state.authFailed = true;
            $('auth').hidden = false;
            $('auth-message').textContent = state.token
              ? 'The token was refused (wrong token). Enter the token in ' + where + '.'
              : 'This endpoint needs its token (' + where + '). Enter it, or open this page once with ?jwt=TOKEN.';
            setStatus('token needed', 'bad');
          }
          const api = { $, state, Unauthorized, get, setStatus, needToken, onToken: () => {} };
          $('token-form').addEventListener('submit', (event) => {
            event.preventDefault();
            state.token = $('token-input').value;
            $('token-input').value = '';
            state.authFailed = false;
            $('auth').hidden = true;
            api.onToken();
          });
          api.plural = (count, word) => count + ' ' + word + (count === 1 ? '' : 's');
          api.cell = (row, text, className) => {
            const td = document.createElement('td');
            td.textContent = text;
            if (className) td.className = className;
            row.appendChild(td);
            return td;
          };
          // Prometheus text → Map of "name{labels}" (without `prefix`) → number.
          api.parseMetrics = (text, prefix) => {
            const values = new Map();
            for (const line of text.split('\n')) {
              if (!line || line.startsWith('#')) continue;
              const space = line.lastIndexOf(' ');
              const name = line.slice(0, space);
              values.set(prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name, Number(line.slice(space + 1)));
            }
            return values;
          };
          return api;
        })();

        """#
}
