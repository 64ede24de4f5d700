import Foundation
import Testing

/// Issue #24: the configuration reference is the truth about the command line — every flag a command's `--help`
/// lists is in `docs/configuration.md` under that command (or `all`), and every flag the page names for a command
/// exists there. The README stays short and its links resolve.
@Suite("Documentation matches the binary", .timeLimit(.minutes(1)))
struct DocumentationTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let commands = ["serve", "runner", "client", "replay", "publish", "subscribe", "demo"]

    /// `command → flags` from the reference table: its first column names commands (`all` for every one), its
    /// second the flags. Cells may hold `\|` (an escaped pipe), which does not split a row.
    static func documentedFlags() throws -> [String: Set<String>] {
        let page = try String(contentsOf: Self.repository.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        var flags: [String: Set<String>] = [:]
        for line in page.split(separator: "\n") where line.hasPrefix("| ") {
            let cells = Self.cells(of: String(line))
            guard cells.count >= 2 else { continue }
            let commands = cells[0].matches(of: /`?([a-z-]+)`?/).map { String($0.output.1) }
            let named = Set(cells[1].matches(of: /--[a-z][a-z0-9-]*/).map { String($0.output) })
            for command in commands { flags[command, default: []].formUnion(named) }
        }
        return flags
    }

    static func cells(of row: String) -> [String] {
        var cells: [String] = []
        var current = ""
        var previous: Character = " "
        for character in row.dropFirst() {
            if character == "|" && previous != "\\" {
                cells.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            } else {
                current.append(character)
            }
            previous = character
        }
        return cells
    }

    /// The flags a command's `--help` declares: option lines start with two spaces and a dash (`--a/--no-a` gives
    /// both); descriptions are indented further, so a flag named inside one is not taken for a declaration.
    static func helpFlags(_ command: String) async throws -> Set<String> {
        let help = try await runTrickleRelay([command, "--help"])
        #expect(help.status == 0, "\(command) --help: \(help.errors)")
        var flags: Set<String> = []
        for line in help.output.split(separator: "\n") {
            guard let match = line.firstMatch(of: /^  (?:-\w, )?(--[a-z][a-z0-9-]*)(?:\/(--[a-z][a-z0-9-]*))?/) else { continue }
            flags.insert(String(match.output.1))
            if let negated = match.output.2 { flags.insert(String(negated)) }
        }
        return flags.subtracting(["--help", "--version"])
    }

    @Test("every flag in --help is in docs/configuration.md, and every documented flag exists", arguments: Self.commands)
    func flags(command: String) async throws {
        let documented = try Self.documentedFlags()
        let inHelp = try await Self.helpFlags(command)
        #expect(!inHelp.isEmpty, "no flags parsed from \(command) --help")
        let inDocs = documented[command, default: []].union(documented["all", default: []])
        #expect(inHelp.subtracting(inDocs).isEmpty, "\(command): in --help, missing from docs/configuration.md: \(inHelp.subtracting(inDocs).sorted())")
        let onlyInDocs = documented[command, default: []].subtracting(inHelp)
        #expect(onlyInDocs.isEmpty, "\(command): in docs/configuration.md, no such flag: \(onlyInDocs.sorted())")
    }

    @Test("the README is read in five minutes (≤ 200 lines) and every page it links to exists")
    func readme() throws {
        let readme = try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.split(separator: "\n", omittingEmptySubsequences: false).count <= 200)
        let links = readme.matches(of: /\]\((docs\/[a-z-]+\.md)(?:#[a-z0-9-]+)?\)/).map { String($0.output.1) }
        #expect(links.count >= 8)
        for link in links {
            #expect(FileManager.default.fileExists(atPath: Self.repository.appendingPathComponent(link).path), "\(link)")
        }
    }
}
