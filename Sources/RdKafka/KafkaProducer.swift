
/// A librdkafka producer for one topic: `produce` queues a message (key and value copied), delivery reports come
/// back through `poll` on the caller's thread, one per message, with the tag it was produced with.
public final class KafkaProducer: @unchecked Sendable {
    // @unchecked: `handle` and `topic` are set once; librdkafka's produce/poll/flush are thread-safe.
    private let library: RdKafkaLibrary
    private let handle: OpaquePointer
    private let topic: OpaquePointer
    private let router: DeliveryRouter
    /// The topic messages go to.
    public let topicName: String

    /// Creates a producer.
    ///
    /// - Parameters:
    ///   - properties: librdkafka configuration properties, in order (later ones win).
    ///   - onDelivery: Called from ``poll(timeoutMilliseconds:)`` for every message: its tag, and 0 or the error.
    /// - Throws: ``KafkaError`` naming a refused property (never its value: it may be a password).
    public init(
        properties: [(String, String)],
        topic: String,
        onDelivery: @escaping @Sendable (_ tag: UInt64, _ error: Int32) -> Void
    ) throws(KafkaError) {
        let library = try RdKafkaLibrary.shared()
        self.library = library
        self.router = DeliveryRouter(onDelivery)
        self.topicName = topic
        guard let configuration = library.confNew() else { throw KafkaError(.producer, "rd_kafka_conf_new failed") }
        var errorText = [CChar](repeating: 0, count: 512)
        for (name, value) in properties {
            let result = library.confSet(configuration, name, value, &errorText, errorText.count)
            guard result == 0 else {
                library.confDestroy(configuration)
                throw KafkaError(.configuration, "Kafka property \(name) refused: \(Self.text(errorText))")
            }
        }
        library.confSetDeliveryCallback(configuration) { _, message, opaque in
            guard let message, let opaque else { return }
            let router = Unmanaged<DeliveryRouter>.fromOpaque(opaque).takeUnretainedValue()
            // rd_kafka_message_t: `err` (int) at offset 0, `_private` (the msg_opaque given to produce) at 64.
            let error = message.load(fromByteOffset: 0, as: Int32.self)
            let tag = UInt64(UInt(bitPattern: message.load(fromByteOffset: 64, as: UnsafeMutableRawPointer?.self)))
            router.deliver(tag, error)
        }
        // The router lives as long as the producer, which destroys the handle (and its callbacks) in deinit.
        library.confSetOpaque(configuration, Unmanaged.passUnretained(self.router).toOpaque())
        guard let handle = library.new(0, configuration, &errorText, errorText.count) else {
            library.confDestroy(configuration)
            throw KafkaError(.producer, "the Kafka producer could not be created: \(Self.text(errorText))")
        }
        self.handle = handle
        guard let topicHandle = library.topicNew(handle, topic, nil) else {
            library.destroy(handle)
            throw KafkaError(.producer, "topic \(topic): \(library.describe(library.lastError()))")
        }
        self.topic = topicHandle
    }

    deinit {
        self.library.topicDestroy(self.topic)
        self.library.destroy(self.handle)
    }

    /// Queues one message (its bytes are copied); returns 0, or the error (``KafkaErrorCode/queueFull``: poll and
    /// try again).
    public func produce(value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer?, tag: UInt64) -> Int32 {
        let copy: Int32 = 0x2  // RD_KAFKA_MSG_F_COPY
        let result = self.library.produce(
            self.topic,
            -1,  // RD_KAFKA_PARTITION_UA: the partitioner (by key) decides
            copy,
            UnsafeMutableRawPointer(mutating: value.baseAddress),
            value.count,
            key?.baseAddress,
            key?.count ?? 0,
            UnsafeMutableRawPointer(bitPattern: UInt(tag))
        )
        return result == 0 ? 0 : self.library.lastError()
    }

    /// Serves delivery reports (and other callbacks) for up to `timeoutMilliseconds`; returns how many events.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) -> Int32 { self.library.poll(self.handle, timeoutMilliseconds) }

    /// Waits until every queued message is delivered or failed, or the timeout; returns 0 or the timeout error.
    @discardableResult
    public func flush(timeoutMilliseconds: Int32) -> Int32 { self.library.flush(self.handle, timeoutMilliseconds) }

    /// Messages and requests librdkafka still holds.
    public var outstanding: Int { Int(self.library.outqLen(self.handle)) }

    /// librdkafka's name for an error code.
    public func describe(_ code: Int32) -> String { self.library.describe(code) }

    /// The C string in an error buffer.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// What the delivery-report callback (a C function, without captures) reaches through librdkafka's opaque.
private final class DeliveryRouter: Sendable {
    let deliver: @Sendable (_ tag: UInt64, _ error: Int32) -> Void

    init(_ deliver: @escaping @Sendable (_ tag: UInt64, _ error: Int32) -> Void) { self.deliver = deliver }
}

/// librdkafka's mock cluster: Kafka brokers on loopback, inside this process, for tests and local runs. Clients
/// in other processes (kcat, a relay) reach it through ``bootstrapServers``.
public final class KafkaMockCluster: @unchecked Sendable {
    private let library: RdKafkaLibrary
    private let owner: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,…` of the brokers.
    public let bootstrapServers: String

    /// Starts `brokers` mock brokers.
    public init(brokers: Int = 3) throws(KafkaError) {
        let library = try RdKafkaLibrary.shared()
        self.library = library
        var errorText = [CChar](repeating: 0, count: 512)
        guard let configuration = library.confNew() else { throw KafkaError(.producer, "rd_kafka_conf_new failed") }
        _ = library.confSet(configuration, "log_level", "3", &errorText, errorText.count)
        guard let owner = library.new(0, configuration, &errorText, errorText.count) else {
            throw KafkaError(.producer, "a handle for the mock cluster could not be created: \(KafkaProducer.text(errorText))")
        }
        guard let cluster = library.mockClusterNew(owner, Int32(brokers)) else {
            library.destroy(owner)
            throw KafkaError(.producer, "the mock cluster could not be started")
        }
        self.owner = owner
        self.cluster = cluster
        self.bootstrapServers = library.mockClusterBootstraps(cluster).map { String(cString: $0) } ?? ""
    }

    deinit {
        self.library.mockClusterDestroy(self.cluster)
        self.library.destroy(self.owner)
    }

    /// Creates a topic (the mock cluster also creates topics on first use, with its default partitions).
    public func createTopic(_ name: String, partitions: Int = 4, replicationFactor: Int = 3) -> Int32 {
        self.library.mockTopicCreate(self.cluster, name, Int32(partitions), Int32(replicationFactor))
    }

    /// Makes the next `errors.count` Produce requests fail with these codes, in order (the producer retries).
    public func failProduceRequests(_ errors: [Int32]) {
        errors.withUnsafeBufferPointer { buffer in
            self.library.mockPushRequestErrors(self.cluster, 0, buffer.count, buffer.baseAddress)  // ApiKey 0: Produce
        }
    }
}
