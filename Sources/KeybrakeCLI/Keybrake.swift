import ArgumentParser
import KeybrakeServer

/// Entry point of the `keybrake` executable; the commands live in KeybrakeServer.
@main
struct Keybrake: AsyncParsableCommand {
    static let configuration = KeybrakeCommand.configuration
}
