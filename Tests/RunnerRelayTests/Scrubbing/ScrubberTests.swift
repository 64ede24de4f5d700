import NIOCore
import Testing
@testable import RunnerRelay

@Suite("Scrubber")
struct ScrubberTests {
    let scrubber = Scrubber()

    @Test(
        "redacts secrets and personal data",
        arguments: [
            ("key sk-proj-abcdefghijklmnopqrstuvwx1234 used", "key [REDACTED:api_key] used"),
            ("sk_live_51HqLyjWDarjtT1zdp7dcXYZ", "[REDACTED:api_key]"),
            ("AKIAIOSFODNN7EXAMPLE", "[REDACTED:api_key]"),
            ("Authorization: Bearer abc.def-ghi_jkl123", "Authorization: Bearer [REDACTED:bearer]"),
            ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "token [REDACTED:jwt]"),
            ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED:github_token]"),
            ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[REDACTED:github_token]"),
            ("gho_16C7e42F292c6912E7710c838347Ae178B4a done", "[REDACTED:github_token] done"),
            ("mail jane.doe+tag@example.co.uk now", "mail [REDACTED:email] now"),
            ("peer 203.0.113.20:8935 up", "peer [REDACTED:ip] up"),
            ("from 8.8.8.8.", "from [REDACTED:ip]."),
            ("v6 2001:db8::8a2e:370:7334 and ::1", "v6 [REDACTED:ip] and ::1"),  // loopback is not personal data
            ("/home/alice/models/sd.safetensors", "[REDACTED:home_path]/models/sd.safetensors"),
            ("at /Users/bob/Library/x.py:12", "at [REDACTED:home_path]/Library/x.py:12"),
            (#"C:\\Users\\carol\\AppData"#, #"[REDACTED:home_path]\\AppData"#),
            ("hex 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "hex [REDACTED:secret]"),
            ("tok Xk29Lmq7Rt5vWz8PnB3cYd6FhJ2sKa9QeT4u", "tok [REDACTED:secret]"),
            ("img " + String(repeating: "QUJD", count: 20) + "==", "img [REDACTED:base64]"),
        ]
    )
    func redacts(input: String, expected: String) {
        #expect(self.scrubber.scrub(input) == expected)
    }

    @Test(
        "leaves ordinary values alone",
        arguments: [
            "pipeline loaded in 1.5 s",
            "6f1c2b7e-3d2a-4f0e-9a51-0123456789ab",  // UUIDs are ids, not secrets
            "started at 12:30:45",  // a time is not an IPv6 address
            "version 1.2.3",  // not an IPv4 address
            "999.1.1.1",  // not an IPv4 address either
            "/usr/local/bin/python3",
            "/home/",  // no user
            "stream_heartbeat",
            "scope-events",
            "gpu_type=H100 fal_region=us-east",
            "sk-short",
            "user@localhost",  // no dot in the domain
            "fps 29.97, frames 1800",
            "ratio 0.5:1",
            "MixedCaseWordsOnlyNoDigitsHereAtAll",
            "",
        ]
    )
    func keeps(input: String) {
        #expect(self.scrubber.scrub(input) == input)
    }

    @Test("scrubs string values only, never keys, numbers or booleans; untouched JSON keeps its bytes")
    func jsonValues() {
        let json = #"{"jane@example.com":"contact jane@example.com","n":192168120,"ok":true,"ip":["8.8.4.4",{"k":"fine"}]}"#
        let (scrubbed, redactions) = self.scrubber.scrub(json: ByteBuffer(string: json))
        #expect(redactions == 2)
        #expect(
            String(buffer: scrubbed)
                == #"{"jane@example.com":"contact [REDACTED:email]","n":192168120,"ok":true,"ip":["[REDACTED:ip]",{"k":"fine"}]}"#
        )
        let clean = #"{"type":"x","v":"nothing here","u":"\u00e9\"q\""}"#
        let (same, none) = self.scrubber.scrub(json: ByteBuffer(string: clean))
        #expect(none == 0)
        #expect(String(buffer: same) == clean)
    }

    @Test("key-aware: a credential-named member is redacted whatever it holds, also in arrays and nested objects")
    func keyAware() {
        let json = #"{"type":"x","password":"p","tokens":["a","b"],"auth":{"token":"t1","user":"u"},"headers":[{"Authorization":"x"}],"commit":"3f786850e387550fdab836ed7e6dc881de23001b","n_tokens":"12"}"#
        let (scrubbed, redactions) = self.scrubber.scrub(json: ByteBuffer(string: json))
        #expect(
            String(buffer: scrubbed)
                == #"{"type":"x","password":"[REDACTED:credential]","tokens":["a","b"],"auth":{"token":"[REDACTED:credential]","user":"u"},"headers":[{"Authorization":"[REDACTED:credential]"}],"commit":"3f786850e387550fdab836ed7e6dc881de23001b","n_tokens":"12"}"#
        )
        #expect(redactions == 3)
    }
}
