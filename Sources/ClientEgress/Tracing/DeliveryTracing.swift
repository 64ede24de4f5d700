public import Tracing
import TrickleProtocol
import TrickleRelaySupport

/// The W3C trace context of relayed envelopes, continued on the client: a sink's delivery is traced as a span
/// that is a child of the envelopes' `data.traceparent` (when a batch shares one) or links to each of them
/// (when it has several), and the request to a remote endpoint carries the span's own `traceparent`.
///
/// The tracer is the relay's own (``RelayTracer``), never the process-global one unless the application chose
/// so; without a tracer nothing is traced and a batch whose traced events share one parent passes that parent on
/// as it is.
public struct DeliveryTracing: Sendable {
    /// The tracer, or `nil` when the relay does not trace.
    public let tracer: (any Tracer)?

    /// Most links one span gets (a batch of 500 events from as many traces links the first ones).
    public static let maximumLinks = 128

    public init(tracer: (any Tracer)?) {
        self.tracer = tracer
    }

    /// No tracing.
    public static let off = DeliveryTracing(tracer: nil)

    /// A traced context as its two header values.
    public struct Headers: Sendable, Hashable {
        public var traceparent: String
        public var tracestate: String?

        public init(traceparent: String, tracestate: String?) {
            self.traceparent = traceparent
            self.tracestate = tracestate
        }
    }

    /// Runs `body` inside a span named `operation`, parented (or linked) to `parents`, and hands it the
    /// headers a request should carry; without a tracer `body` gets the single shared parent, if any.
    public func withSpan<Result>(
        _ operation: String,
        parents: some Sequence<Headers>,
        attributes: [String: Int] = [:],
        _ body: (Headers?) async throws -> Result
    ) async rethrows -> Result {
        guard let started = self.startSpan(operation, parents: parents, attributes: attributes) else {
            var shared: Headers?
            var several = false
            for parent in parents where parent != shared {
                if shared == nil { shared = parent } else { several = true; break }
            }
            return try await body(several ? nil : shared)
        }
        defer { started.span.end() }
        do {
            return try await body(started.headers)
        } catch {
            started.span.recordError(error)
            throw error
        }
    }

    /// Starts a span named `operation`, a child of `parents` when they are one context and linking each of them
    /// (at most ``maximumLinks``) when several, for a delivery that ends later (a Kafka batch ends when the
    /// brokers acknowledged it). Returns the span with the headers a request should carry, or `nil` without a
    /// tracer. The caller ends the span.
    public func startSpan(
        _ operation: String,
        parents: some Sequence<Headers>,
        attributes: [String: Int] = [:]
    ) -> (span: any Span, headers: Headers?)? {
        guard let tracer = self.tracer else { return nil }
        var distinct: [Headers] = []
        for parent in parents where !distinct.contains(parent) {
            distinct.append(parent)
            if distinct.count > Self.maximumLinks { break }
        }
        var context = InstrumentationContext.current ?? .topLevel
        if distinct.count == 1 {
            tracer.extract(distinct[0], into: &context, using: HeadersExtractor())
        }
        let span = tracer.startSpan(operation, context: context, ofKind: .producer)
        if distinct.count > 1 {
            for parent in distinct.prefix(Self.maximumLinks) {
                var linked = InstrumentationContext.topLevel
                tracer.extract(parent, into: &linked, using: HeadersExtractor())
                span.addLink(SpanLink(context: linked, attributes: [:]))
            }
        }
        for (key, value) in attributes { span.attributes[key] = value }
        var outgoing = HeaderCarrier()
        tracer.inject(span.context, into: &outgoing, using: HeadersInjector())
        return (span, outgoing.traceparent.map { Headers(traceparent: $0, tracestate: outgoing.tracestate) })
    }

    /// Runs `body` inside a span of the relay's own work (no parent from the envelopes).
    @discardableResult
    public func withSpan<Result>(_ operation: String, attributes: [String: Int] = [:], _ body: () async throws -> Result) async rethrows -> Result {
        guard let tracer = self.tracer else { return try await body() }
        let span = tracer.startSpan(operation, context: InstrumentationContext.current ?? .topLevel, ofKind: .internal)
        for (key, value) in attributes { span.attributes[key] = value }
        defer { span.end() }
        do {
            return try await body()
        } catch {
            span.recordError(error)
            throw error
        }
    }
}

extension DeliveryTracing {
    /// A `trickle_relay.segment.read` span for one segment read to its end, from its GET to its last byte.
    static func traceSegmentRead(_ read: JSONLReader.SegmentRead, channel: String, tracer: any Tracer) {
        let span = tracer.startSpan(
            "trickle_relay.segment.read",
            context: .topLevel,
            ofKind: .consumer,
            at: DefaultTracerClock.Timestamp(nanosecondsSinceEpoch: read.startedAtNanos)
        )
        span.attributes["trickle.seq"] = read.seq
        span.attributes["trickle.channel"] = channel
        span.attributes["trickle_relay.bytes"] = read.bytes
        if !read.complete { span.setStatus(SpanStatus(code: .error, message: "the segment did not end cleanly")) }
        span.end()
    }
}

private struct HeadersExtractor: Extractor {
    func extract(key: String, from carrier: DeliveryTracing.Headers) -> String? {
        switch key.lowercased() {
        case "traceparent": return carrier.traceparent
        case "tracestate": return carrier.tracestate
        default: return nil
        }
    }
}

private struct HeaderCarrier {
    var traceparent: String?
    var tracestate: String?
}

private struct HeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout HeaderCarrier) {
        switch key.lowercased() {
        case "traceparent": carrier.traceparent = value
        case "tracestate": carrier.tracestate = value
        default: break
        }
    }
}
