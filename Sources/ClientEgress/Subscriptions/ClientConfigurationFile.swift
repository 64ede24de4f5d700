#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
public import TrickleProtocol
import TrickleRelaySupport

/// The client's configuration file (`--config FILE`, re-read on SIGHUP): a JSON object, every field optional.
///
/// ```json
/// {
///   "sink": "https://metrics.example/v1/metrics",
///   "api_key_file": "/etc/trickle-relay/metrics.key",
///   "spool_dir": "/var/lib/trickle-relay/spool",
///   "listen": "127.0.0.1:7071",
///   "stream_token_file": "/etc/trickle-relay/stream.token",
///   "wait_for_channel": 60,
///   "reconnect_grace": 30,
///   "subscriptions": [
///     {"events_url": "https://orch.example/ai/trickle/abc-events", "session_id": "abc", "start": "latest"}
///   ]
/// }
/// ```
///
/// Unknown fields are refused (a typo would otherwise be silently ignored). Flags given on the command line
/// win over the file.
public struct ClientConfigurationFile: Sendable {
    public var sink: EgressSinkSpecification?
    public var apiKeyFile: String?
    public var spoolDirectory: String?
    /// `"spool": false` sends without the disk spool.
    public var spool: Bool?
    public var spoolMaximumBytes: Int?
    /// `HOST:PORT` or `off`.
    public var listen: String?
    public var streamTokenFile: String?
    public var waitForChannel: Double?
    public var reconnectGrace: Double?
    /// `kafka_topic`, `kafka_compression`, `kafka_options` (an object of librdkafka properties, strings).
    public var kafkaTopic: String?
    public var kafkaCompression: String?
    public var kafkaOptions: [(String, String)]?
    /// `ca_file`, `ca_only`, `client_cert`, `client_key`: trust and client certificate for outbound HTTPS (the
    /// flags `--ca-file` … win).
    public var caFile: String?
    public var caOnly: Bool?
    public var clientCertificateFile: String?
    public var clientKeyFile: String?
    public var subscriptions: [ChannelSubscription] = []

    /// The TLS fields as outbound TLS settings (flags and the environment are laid over them by the caller).
    public var tls: OutboundTLS {
        OutboundTLS(caFile: self.caFile, caOnly: self.caOnly ?? false, clientCertificateFile: self.clientCertificateFile, clientKeyFile: self.clientKeyFile)
    }

    static let fields = [
        "sink", "api_key_file", "spool_dir", "spool", "spool_max_bytes", "listen", "stream_token_file", "wait_for_channel", "reconnect_grace",
        "kafka_topic", "kafka_compression", "kafka_options", "ca_file", "ca_only", "client_cert", "client_key", "subscriptions",
    ]

    /// Reads and checks the file at `path`.
    ///
    /// - Throws: ``ClientConfigurationFileError`` naming the file, the field and the reason.
    public init(path: String) throws(ClientConfigurationFileError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClientConfigurationFileError(path: path, field: nil, reason: "cannot read the file (\(String(cString: strerror(errno))))")
        }
        guard data.count <= 16 << 20 else { throw ClientConfigurationFileError(path: path, field: nil, reason: "larger than 16 MiB") }
        try self.init(data: data, path: path)
    }

    /// Reads and checks a file's contents; `path` names it in errors.
    public init(data: Data, path: String) throws(ClientConfigurationFileError) {
        func fail(_ field: String?, _ reason: String) -> ClientConfigurationFileError {
            ClientConfigurationFileError(path: path, field: field, reason: reason)
        }
        let decoded: JSONValue
        do {
            decoded = try JSONValue.parse(data)
        } catch {
            throw fail(nil, "not valid JSON (\(error.description))")
        }
        guard let object = decoded.objectValue else { throw fail(nil, "must be a JSON object ({\"subscriptions\": [...], …})") }
        if let unknown = object.keys.sorted().first(where: { !Self.fields.contains($0) }) {
            throw fail(String(unknown.prefix(64)), "unknown field (known: \(Self.fields.joined(separator: ", ")))")
        }
        func string(_ name: String) throws(ClientConfigurationFileError) -> String? {
            guard let value = object[name], !value.isNull else { return nil }
            guard let text = value.stringValue, !text.isEmpty else { throw fail(name, "must be a non-empty string") }
            return text
        }
        func seconds(_ name: String) throws(ClientConfigurationFileError) -> Double? {
            guard let value = object[name], !value.isNull else { return nil }
            guard let number = value.doubleValue, number.isFinite, number >= 0, number <= 31_536_000 else {
                throw fail(name, "must be a number of seconds from 0 to 31536000")
            }
            return number
        }
        if let text = try string("sink") {
            do {
                self.sink = try EgressSinkSpecification(parsing: text)
            } catch {
                throw fail("sink", error.description)
            }
        }
        self.apiKeyFile = try string("api_key_file")
        self.spoolDirectory = try string("spool_dir")
        if let value = object["spool"], !value.isNull {
            guard case .bool(let flag) = value else { throw fail("spool", "must be true or false") }
            self.spool = flag
        }
        if let value = object["spool_max_bytes"], !value.isNull {
            guard let number = value.doubleValue, let bytes = Int(exactly: number), bytes >= 1 << 20, bytes <= 1 << 50
            else { throw fail("spool_max_bytes", "must be a whole number of bytes, at least 1048576 (1 MiB)") }
            self.spoolMaximumBytes = bytes
        }
        if let listen = try string("listen") {
            guard listen == "off" || ListenAddress(listen.hasPrefix(":") ? "127.0.0.1" + listen : listen) != nil else {
                throw fail("listen", "must be HOST:PORT (e.g. 127.0.0.1:7071) or off, got \(listen.prefix(80))")
            }
            self.listen = listen
        }
        self.streamTokenFile = try string("stream_token_file")
        self.caFile = try string("ca_file")
        if let value = object["ca_only"], !value.isNull {
            guard case .bool(let flag) = value else { throw fail("ca_only", "must be true or false") }
            self.caOnly = flag
        }
        self.clientCertificateFile = try string("client_cert")
        self.clientKeyFile = try string("client_key")
        self.waitForChannel = try seconds("wait_for_channel")
        self.reconnectGrace = try seconds("reconnect_grace")
        self.kafkaTopic = try string("kafka_topic")
        self.kafkaCompression = try string("kafka_compression")
        if let value = object["kafka_options"], !value.isNull {
            guard let options = value.objectValue else { throw fail("kafka_options", "must be an object of librdkafka properties, e.g. {\"ssl.ca.location\": \"/etc/ssl/ca.pem\"}") }
            var pairs: [(String, String)] = []
            for key in options.keys.sorted() {
                guard let text = options[key]?.stringValue else { throw fail("kafka_options.\(key.prefix(64))", "must be a string") }
                pairs.append((key, text))
            }
            self.kafkaOptions = pairs
        }
        if let value = object["subscriptions"], !value.isNull {
            guard case .array(let entries) = value else { throw fail("subscriptions", "must be an array of {\"events_url\": …} objects") }
            var seen: [String: Int] = [:]
            for (index, entry) in entries.enumerated() {
                let subscription: ChannelSubscription
                do {
                    subscription = try SubscriptionRequest.subscription(from: entry, path: "subscriptions[\(index)]", origin: .config)
                } catch {
                    throw ClientConfigurationFileError(path: path, field: nil, reason: error.description)
                }
                if let first = seen[subscription.id] {
                    throw fail("subscriptions[\(index)].events_url", "the same channel as subscriptions[\(first)]")
                }
                seen[subscription.id] = index
                self.subscriptions.append(subscription)
            }
        }
    }
}

/// A configuration file that cannot be used: which file, which field, why.
public struct ClientConfigurationFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    /// The field (`subscriptions[2].events_url`), when the problem is in one.
    public var field: String?
    public var reason: String

    public var description: String {
        if let field { return "configuration file \(self.path): \(field): \(self.reason)" }
        return "configuration file \(self.path): \(self.reason)"
    }
}
