import ArgumentParser
import NIOSSL
import TrickleProtocol

/// `--ca-file`, `--ca-only`, `--client-cert`, `--client-key`: the trust and client certificate of every outbound
/// HTTPS connection (publisher, subscriber, metrics reporter, OTLP logs), with environment variables standing in.
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("ca-file"), help: ArgumentHelp(
        "PEM certificate authorities to trust for https://, in addition to the system's. (env: TRICKLE_RELAY_CA_FILE)",
        valueName: "PEM"
    ))
    var caFile: String?

    @Flag(name: .customLong("ca-only"), help: "Trust only --ca-file, not the system's store. (env: TRICKLE_RELAY_CA_ONLY=1)")
    var caOnly = false

    @Option(name: .customLong("client-cert"), help: ArgumentHelp(
        "PEM client certificate (chain) for servers that require mutual TLS. (env: TRICKLE_RELAY_CLIENT_CERT)",
        valueName: "PEM"
    ))
    var clientCertificate: String?

    @Option(name: .customLong("client-key"), help: ArgumentHelp(
        "Its unencrypted PEM private key. (env: TRICKLE_RELAY_CLIENT_KEY)",
        valueName: "PEM"
    ))
    var clientKey: String?

    /// The settings: flags, else a configuration file's fields (`file`), else the environment.
    func settings(file: OutboundTLS = OutboundTLS()) -> OutboundTLS {
        OutboundTLS(
            caFile: self.caFile ?? file.caFile ?? Environment.value("TRICKLE_RELAY_CA_FILE"),
            caOnly: self.caOnly || file.caOnly || ["1", "true", "yes", "on"].contains(Environment.value("TRICKLE_RELAY_CA_ONLY") ?? ""),
            clientCertificateFile: self.clientCertificate ?? file.clientCertificateFile ?? Environment.value("TRICKLE_RELAY_CLIENT_CERT"),
            clientKeyFile: self.clientKey ?? file.clientKeyFile ?? Environment.value("TRICKLE_RELAY_CLIENT_KEY")
        )
    }

    /// The files read and checked now; `nil` when nothing is configured (AsyncHTTPClient's default).
    ///
    /// - Throws: `ValidationError` (exit 64) naming the flag, the file and the problem.
    func configuration(file: OutboundTLS = OutboundTLS()) throws(ValidationError) -> TLSConfiguration? {
        let settings = self.settings(file: file)
        guard !settings.isSystemDefault else { return nil }
        do {
            return try settings.configuration()
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// The subscriber's own connections' TLS for `configuration` (`nil`: the system's store).
    ///
    /// - Throws: `ValidationError` (exit 64) when the configuration cannot make a TLS context.
    static func outboundTLS(_ configuration: TLSConfiguration?) throws(ValidationError) -> OutboundTLSContext {
        do {
            return try OutboundTLSContext(configuration ?? .makeClientConfiguration())
        } catch {
            throw ValidationError("the TLS settings cannot be used: \(error)")
        }
    }
}
