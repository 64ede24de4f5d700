import HTTPTypes
import NIOHTTP1
import TrickleRelaySupport

/// A whole response of the embedded server, written at once: a status, headers and a short text body.
struct ServerResponse {
    var status: Int
    var headers: HTTPHeaders
    var body: String
    /// Close the connection once the response is written (a POST whose body will not be read to its end).
    var closeConnection: Bool

    /// A response whose body is `reason` and a newline (nothing for an empty reason), as go-livepeer's
    /// `http.Error` answers.
    static func text(
        _ status: Int,
        _ reason: String,
        headers: HTTPHeaders = [:],
        closeConnection: Bool = false
    ) -> ServerResponse {
        var headers = headers
        if !reason.isEmpty { headers.replaceOrAdd(name: "Content-Type", value: "text/plain; charset=utf-8") }
        return ServerResponse(status: status, headers: headers, body: reason.isEmpty ? "" : reason + "\n", closeConnection: closeConnection)
    }

    /// `200` with `Lp-Trickle-Closed`: the channel is closed.
    static func channelClosed(closeConnection: Bool = false) -> ServerResponse {
        .text(200, "", headers: [TrickleHeaders.closed.rawName: TrickleHeaders.closedValue], closeConnection: closeConnection)
    }

    /// The response head, with `Content-Length` and, when asked, `Connection: close`.
    func head(version: HTTPVersion) -> HTTPResponseHead {
        var headers = self.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(self.body.utf8.count))
        if self.closeConnection { headers.replaceOrAdd(name: "Connection", value: "close") }
        return HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: self.status), headers: headers)
    }
}
