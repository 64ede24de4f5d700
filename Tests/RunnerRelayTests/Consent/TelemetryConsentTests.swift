import Testing
@testable import RunnerRelay

@Suite("TelemetryConsent")
struct TelemetryConsentTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var flag: Bool?
        var environment: [String: String]
        var enabled: Bool
        var testDescription: String { "flag=\(self.flag.map(String.init) ?? "none") env=\(self.environment) -> \(self.enabled)" }
    }

    @Test(
        "the precedence table",
        arguments: [
            Case(flag: nil, environment: [:], enabled: false),  // opt-in: off by default
            Case(flag: true, environment: [:], enabled: true),
            Case(flag: false, environment: [:], enabled: false),
            Case(flag: nil, environment: ["TRICKLE_RELAY_TELEMETRY": "1"], enabled: true),
            Case(flag: nil, environment: ["TRICKLE_RELAY_TELEMETRY": "on"], enabled: true),
            Case(flag: nil, environment: ["TRICKLE_RELAY_TELEMETRY": "0"], enabled: false),
            Case(flag: false, environment: ["TRICKLE_RELAY_TELEMETRY": "1"], enabled: false),  // the flag beats env opt-in
            Case(flag: true, environment: ["TRICKLE_RELAY_TELEMETRY": "0"], enabled: false),  // env opt-out beats the flag
            Case(flag: true, environment: ["DO_NOT_TRACK": "1"], enabled: false),  // DO_NOT_TRACK always wins
            Case(flag: nil, environment: ["DO_NOT_TRACK": "1", "TRICKLE_RELAY_TELEMETRY": "1"], enabled: false),
            Case(flag: true, environment: ["DO_NOT_TRACK": "true"], enabled: false),
            Case(flag: true, environment: ["DO_NOT_TRACK": "0"], enabled: true),  // DO_NOT_TRACK=0 is not an opt-out
            Case(flag: true, environment: ["DO_NOT_TRACK": ""], enabled: true),
            Case(flag: nil, environment: ["TRICKLE_RELAY_TELEMETRY": "maybe"], enabled: false),  // unknown: ignored
        ]
    )
    func precedence(testCase: Case) {
        #expect(TelemetryConsent(flag: testCase.flag, environment: testCase.environment).isEnabled == testCase.enabled)
    }

    @Test("the reason names the deciding rule")
    func reasons() {
        #expect(TelemetryConsent(flag: true, environment: ["DO_NOT_TRACK": "1"]).reason.contains("DO_NOT_TRACK"))
        #expect(TelemetryConsent(flag: nil, environment: [:]).reason.contains("off by default"))
    }
}
