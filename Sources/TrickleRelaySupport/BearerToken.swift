public import Hummingbird

/// A secret bearer token: its description never shows the value (logs, errors, `--help` defaults).
public struct BearerToken: Sendable, CustomStringConvertible {
    let value: [UInt8]

    public init(_ value: String) {
        self.value = Array(value.utf8)
    }

    public var description: String { "<REDACTED>" }

    /// The credentials of an `Authorization` header value with the `Bearer` scheme, matched case-insensitively
    /// (RFC 7235 §2.1: "the name of the scheme is case-insensitive"); `nil` for another scheme.
    public static func credentials(inAuthorization header: String) -> Substring? {
        let value = header.drop { $0 == " " }
        guard value.utf8.count > 7, value.prefix(7).lowercased() == "bearer " else { return nil }
        return value.dropFirst(7).drop { $0 == " " }
    }

    /// Compares a presented token in constant time (for equal lengths; the length itself is not secret).
    public func matches(_ presented: Substring) -> Bool {
        let bytes = Array(presented.utf8)
        var difference = UInt8(bytes.count == self.value.count ? 0 : 1)
        for index in 0..<self.value.count {
            difference |= self.value[index] ^ (index < bytes.count ? bytes[index] : 0)
        }
        return difference == 0
    }
}

/// Requires `Authorization: Bearer <token>` on every route except `/healthz` — or, when `queryParameter` is
/// set, the token as that query parameter (browsers' `EventSource` cannot set headers; SSE takes `?jwt=`).
public struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    public let token: BearerToken
    public let queryParameter: String?
    /// Paths served without the token: `/healthz`, and pages that carry no data (they ask for the token).
    public let openPaths: Set<String>

    public init(token: BearerToken, queryParameter: String? = nil, openPaths: Set<String> = []) {
        self.token = token
        self.queryParameter = queryParameter
        self.openPaths = openPaths.union(["/healthz"])
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if self.openPaths.contains(request.uri.path) { return try await next(request, context) }
        if let header = request.headers[.authorization], let presented = BearerToken.credentials(inAuthorization: header), self.token.matches(presented) {
            return try await next(request, context)
        }
        if let queryParameter, let presented = request.uri.queryParameters[queryParameter[...]], self.token.matches(presented) {
            return try await next(request, context)
        }
        return Response(
            status: .unauthorized,
            headers: [.wwwAuthenticate: "Bearer", .contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"error":"missing or wrong bearer token"}"#))
        )
    }
}
