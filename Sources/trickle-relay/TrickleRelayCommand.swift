import ArgumentParser
import TrickleRelaySupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct TrickleRelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trickle-relay",
        abstract: "Relay GPU-runner telemetry over a Livepeer trickle events channel.",
        discussion: """
            TrickleRelay carries telemetry from a cloud GPU runner to the user's machine over the session's \
            trickle events channel (JSON Lines over Livepeer's segmented HTTP pub/sub protocol).

            See it work (server, runner agent and client in one process):
              trickle-relay demo --duration 10

            Start a local trickle server:
              trickle-relay serve
            """,
        version: BuildInfo.versionLine,
        subcommands: [DemoCommand.self, ServeCommand.self, RunnerCommand.self, ClientCommand.self, ReplayCommand.self, PublishCommand.self, SubscribeCommand.self]
    )

    static func main() async {
        // A reader that goes away (`trickle-relay subscribe … | head -n 1`) is an EPIPE on the next write, which each
        // command handles (ends quietly, or stops printing and goes on), instead of a SIGPIPE that kills the process
        // before it can report what it did.
        signal(SIGPIPE, SIG_IGN)
        // A file size limit (`ulimit -f`) is likewise a failed write (EFBIG) the file sink reports and counts,
        // not a signal that kills the process mid-record.
        signal(SIGXFSZ, SIG_IGN)
        // A second SIGTERM/SIGINT ends the process at once, whatever the graceful stop is waiting for.
        SecondSignalExit.install()
        // ArgumentParser's `main`, with standard error's queue drained before the process ends (its last log
        // lines and summary are queued: a reader that stopped must never block the process that logs).
        do {
            var command = try await asyncParseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            StandardErrorQueue.shared.drain(timeout: .seconds(2))
            exit(withError: error)
        }
        StandardErrorQueue.shared.drain(timeout: .seconds(2))
    }
}
