import ArgumentParser

/// The version `trickle-relay --version` prints.
let trickleRelayVersion = "0.3.0"

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
        version: trickleRelayVersion,
        subcommands: [DemoCommand.self, ServeCommand.self, RunnerCommand.self, ClientCommand.self, ReplayCommand.self, PublishCommand.self, SubscribeCommand.self]
    )
}
