#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import NIOCore

/// The control API on the client's local endpoint:
///
/// | route | what |
/// | --- | --- |
/// | `POST /v1/subscriptions` | `{"events_url","session_id"?,"start"?}` → 201 with the subscription (its `id`); 400 naming the field; 409 when the channel is followed already |
/// | `GET /v1/subscriptions?limit=N&after=ID` | `{"subscriptions":[…],"total":T,"next":ID?}`: each one's state and counters, a page of at most `limit` (default 1,000, at most 10,000) after subscription `after`; `next` names the last one when more follow |
/// | `GET /v1/subscriptions/{id}` | one of them |
/// | `POST /v1/subscriptions/{id}/expect` | its channel is expected now (the runner started): a subscription waiting for it asks at once → 200 with it; 404 when unknown |
/// | `DELETE /v1/subscriptions/{id}` | stop following it → 200 with its last counters; 404 when unknown |
///
/// The same token rules as the stream apply (the router's middleware).
/// The body of `GET /v1/subscriptions`.
struct SubscriptionList: Encodable {
    var subscriptions: [SubscriptionSnapshot]
    /// Subscriptions listed in all (every page).
    var total: Int
    /// The `after` of the next page, when there is one.
    var next: String?
}

enum SubscriptionRoutes {
    static let maximumBodyBytes = 64 * 1024
    static let defaultPageSize = 1_000
    static let maximumPageSize = 10_000

    static func add<Context: RequestContext>(to router: Router<Context>, daemon: ClientDaemon) {
        router.post("v1/subscriptions") { request, _ in
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: self.maximumBodyBytes)
            } catch {
                return self.error(.contentTooLarge, "a subscription request is at most \(self.maximumBodyBytes) bytes")
            }
            do throws(SubscriptionError) {
                let subscription = try SubscriptionRequest.subscription(fromBody: body.readableBytesView)
                return self.json(.created, try daemon.add(subscription))
            } catch {
                return self.error(error)
            }
        }
        router.get("v1/subscriptions") { request, _ in
            let query = request.uri.queryParameters
            var limit = Self.defaultPageSize
            if let text = query["limit"] {
                guard let value = Int(String(text)), (1...Self.maximumPageSize).contains(value) else {
                    return self.error(.badRequest, "limit must be 1…\(Self.maximumPageSize), got \(text.prefix(40))")
                }
                limit = value
            }
            let after = query["after"].map(String.init)
            let (page, total) = daemon.subscriptions(after: after, limit: limit)
            let more = page.last.map { last in daemon.subscriptions(after: last.id, limit: 1).page.isEmpty == false } ?? false
            return self.json(.ok, SubscriptionList(subscriptions: page, total: total, next: more ? page.last?.id : nil))
        }
        router.get("v1/subscriptions/:id") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let snapshot = daemon.subscription(id: id) else { return self.error(SubscriptionError(.notFound, "no subscription \(id.prefix(80))")) }
            return self.json(.ok, snapshot)
        }
        router.post("v1/subscriptions/:id/expect") { _, context in
            do throws(SubscriptionError) {
                return self.json(.ok, try daemon.expect(id: context.parameters.get("id") ?? ""))
            } catch {
                return self.error(error)
            }
        }
        router.delete("v1/subscriptions/:id") { _, context in
            do throws(SubscriptionError) {
                return self.json(.ok, try daemon.remove(id: context.parameters.get("id") ?? ""))
            } catch {
                return self.error(error)
            }
        }
    }

    private static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var buffer = ByteBuffer(bytes: data)
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: buffer))
    }

    private static func error(_ error: SubscriptionError) -> Response {
        let status: HTTPResponse.Status
        switch error.code {
        case .invalid: status = .badRequest
        case .duplicate: status = .conflict
        case .notFound: status = .notFound
        case .unavailable: status = .serviceUnavailable
        }
        return self.error(status, error.description)
    }

    private static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        struct Body: Encodable { var error: String }
        return self.json(status, Body(error: message))
    }
}
