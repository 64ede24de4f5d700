import Foundation
import Testing
import TrickleRelaySupport

@Suite("PrivateDirectory")
struct PrivateDirectoryTests {
    @Test("creates missing parents with mode 0700, leaves an existing directory alone, names what is in the way")
    func create() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("private-directory-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try PrivateDirectory.create(root + "/a/b")
        let mode = try FileManager.default.attributesOfItem(atPath: root + "/a/b")[.posixPermissions] as? Int
        #expect(mode == 0o700)
        try PrivateDirectory.create(root + "/a/b")  // again: nothing to do
        try PrivateDirectory.create(root + "//a/./b/")  // the same directory, spelled loosely
        try "x".write(toFile: root + "/file", atomically: true, encoding: .utf8)
        #expect(throws: PrivateDirectory.CreationError(path: root + "/file", reason: "exists and is not a directory")) {
            try PrivateDirectory.create(root + "/file/c")
        }
        #expect(throws: PrivateDirectory.CreationError(path: "", reason: "is empty")) { try PrivateDirectory.create("") }
    }
}
