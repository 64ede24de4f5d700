#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// librdkafka, loaded at run time (`dlopen("librdkafka.so.1")`): the default binary builds and runs everywhere,
/// and a machine with Debian's `librdkafka1` can use Kafka without rebuilding. Only the few functions the
/// producer, its delivery reports and the mock cluster need are looked up.
public final class RdKafkaLibrary: @unchecked Sendable {
    // @unchecked: immutable after init; the C functions are thread-safe as librdkafka documents them.
    typealias ConfNew = @convention(c) () -> OpaquePointer?
    typealias ConfSet = @convention(c) (OpaquePointer?, UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int32
    typealias ConfSetOpaque = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void
    typealias DeliveryCallback = @convention(c) (OpaquePointer?, UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Void
    typealias ConfSetDeliveryCallback = @convention(c) (OpaquePointer?, DeliveryCallback?) -> Void
    typealias ConfDestroy = @convention(c) (OpaquePointer?) -> Void
    typealias New = @convention(c) (Int32, OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> OpaquePointer?
    typealias Destroy = @convention(c) (OpaquePointer?) -> Void
    typealias TopicNew = @convention(c) (OpaquePointer?, UnsafePointer<CChar>, OpaquePointer?) -> OpaquePointer?
    typealias TopicDestroy = @convention(c) (OpaquePointer?) -> Void
    typealias Produce = @convention(c) (
        OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?, Int, UnsafeRawPointer?, Int, UnsafeMutableRawPointer?
    ) -> Int32
    typealias Poll = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias Flush = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias LastError = @convention(c) () -> Int32
    typealias ErrorString = @convention(c) (Int32) -> UnsafePointer<CChar>?
    typealias OutqLen = @convention(c) (OpaquePointer?) -> Int32
    typealias VersionString = @convention(c) () -> UnsafePointer<CChar>?
    typealias MockClusterNew = @convention(c) (OpaquePointer?, Int32) -> OpaquePointer?
    typealias MockClusterDestroy = @convention(c) (OpaquePointer?) -> Void
    typealias MockClusterBootstraps = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    typealias MockClusterHandle = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias MockPushRequestErrors = @convention(c) (OpaquePointer?, Int16, Int, UnsafePointer<Int32>?) -> Void
    typealias MockTopicCreate = @convention(c) (OpaquePointer?, UnsafePointer<CChar>, Int32, Int32) -> Int32

    let confNew: ConfNew
    let confSet: ConfSet
    let confSetOpaque: ConfSetOpaque
    let confSetDeliveryCallback: ConfSetDeliveryCallback
    let confDestroy: ConfDestroy
    let new: New
    let destroy: Destroy
    let topicNew: TopicNew
    let topicDestroy: TopicDestroy
    let produce: Produce
    let poll: Poll
    let flush: Flush
    let lastError: LastError
    let errorString: ErrorString
    let outqLen: OutqLen
    let mockClusterNew: MockClusterNew
    let mockClusterDestroy: MockClusterDestroy
    let mockClusterBootstraps: MockClusterBootstraps
    let mockPushRequestErrors: MockPushRequestErrors
    let mockTopicCreate: MockTopicCreate
    /// librdkafka's version, e.g. `2.0.2`.
    public let version: String

    private static let loaded: Result<RdKafkaLibrary, KafkaError> = {
        do throws(KafkaError) {
            return .success(try RdKafkaLibrary(name: "librdkafka.so.1"))
        } catch {
            return .failure(error)
        }
    }()

    /// The library, loaded once per process.
    ///
    /// - Throws: ``KafkaError`` naming the package to install when it is missing.
    public static func shared() throws(KafkaError) -> RdKafkaLibrary { try self.loaded.get() }

    /// Whether librdkafka can be loaded here.
    public static var isAvailable: Bool { (try? self.shared()) != nil }

    private init(name: String) throws(KafkaError) {
        guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
            throw KafkaError(
                .libraryMissing,
                "the Kafka sink needs librdkafka (\(name)), which is not installed: apt-get install librdkafka1 (Debian/Ubuntu) or your system's librdkafka package"
            )
        }
        func symbol<T>(_ name: String, as type: T.Type) throws(KafkaError) -> T {
            guard let pointer = dlsym(handle, name) else {
                throw KafkaError(.libraryMissing, "librdkafka lacks \(name): version 1.7 or later is needed")
            }
            return unsafeBitCast(pointer, to: type)
        }
        self.confNew = try symbol("rd_kafka_conf_new", as: ConfNew.self)
        self.confSet = try symbol("rd_kafka_conf_set", as: ConfSet.self)
        self.confSetOpaque = try symbol("rd_kafka_conf_set_opaque", as: ConfSetOpaque.self)
        self.confSetDeliveryCallback = try symbol("rd_kafka_conf_set_dr_msg_cb", as: ConfSetDeliveryCallback.self)
        self.confDestroy = try symbol("rd_kafka_conf_destroy", as: ConfDestroy.self)
        self.new = try symbol("rd_kafka_new", as: New.self)
        self.destroy = try symbol("rd_kafka_destroy", as: Destroy.self)
        self.topicNew = try symbol("rd_kafka_topic_new", as: TopicNew.self)
        self.topicDestroy = try symbol("rd_kafka_topic_destroy", as: TopicDestroy.self)
        self.produce = try symbol("rd_kafka_produce", as: Produce.self)
        self.poll = try symbol("rd_kafka_poll", as: Poll.self)
        self.flush = try symbol("rd_kafka_flush", as: Flush.self)
        self.lastError = try symbol("rd_kafka_last_error", as: LastError.self)
        self.errorString = try symbol("rd_kafka_err2str", as: ErrorString.self)
        self.outqLen = try symbol("rd_kafka_outq_len", as: OutqLen.self)
        self.mockClusterNew = try symbol("rd_kafka_mock_cluster_new", as: MockClusterNew.self)
        self.mockClusterDestroy = try symbol("rd_kafka_mock_cluster_destroy", as: MockClusterDestroy.self)
        self.mockClusterBootstraps = try symbol("rd_kafka_mock_cluster_bootstraps", as: MockClusterBootstraps.self)
        self.mockPushRequestErrors = try symbol("rd_kafka_mock_push_request_errors_array", as: MockPushRequestErrors.self)
        self.mockTopicCreate = try symbol("rd_kafka_mock_topic_create", as: MockTopicCreate.self)
        let versionString = try symbol("rd_kafka_version_str", as: VersionString.self)
        self.version = versionString().map { String(cString: $0) } ?? "?"
    }

    /// librdkafka's name for an error code.
    public func describe(_ code: Int32) -> String {
        self.errorString(code).map { String(cString: $0) } ?? "error \(code)"
    }
}

/// A Kafka failure, with what to do about it.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// librdkafka is not installed.
        case libraryMissing
        /// A configuration property was refused.
        case configuration
        /// The producer could not be created.
        case producer
    }

    public var code: Code
    public var description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// librdkafka error codes the producer acts on.
public enum KafkaErrorCode {
    public static let noError: Int32 = 0
    public static let queueFull: Int32 = -184
    public static let messageTimedOut: Int32 = -192
    public static let notEnoughReplicas: Int32 = 19
    public static let requestTimedOut: Int32 = 7
}
