import Support
import ArgumentParser
import Communication
import Config
import Foundation

struct ShowConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config",
        abstract: "Print the resolved configuration (YAML), or with --markdown the reference of every key.")

    @Flag(help: "Print docs/configuration.md's table of every key.")
    var markdown = false

    @Option(help: ArgumentHelp("Print only the resolved value of this key (for scripts); repeated, one value per line in the order given.", valueName: "section.key"))
    var get: [String] = []

    @OptionGroup var options: ConfigOptions

    func validate() throws {
        if markdown && (!get.isEmpty || options.config != nil || !options.overrides.isEmpty) {
            throw ValidationError("--markdown prints the reference of every key (the schema's defaults); it takes no --get, --config or --set")
        }
    }

    func run() throws {
        runJob { comm in
            if markdown { if comm.isRoot { print(configurationMarkdown(), terminator: "") }; return }
            let (config, _) = try options.resolve(comm)
            guard comm.isRoot else { return }      // under mpirun: every rank resolves (and agrees), rank 0 prints
            if !get.isEmpty {
                for key in get where config.values[key] == nil {
                    let keys = ConfigSchema.keys.map(\.path).filter { $0.hasPrefix(key + ".") }
                    throw InputError(keys.isEmpty ? "--get \(key): unknown key (see docs/configuration.md)"
                                                  : "--get \(key): a section, not a key; give one of its keys (\(keys.joined(separator: ", ")))")
                }
                for key in get { print(config.values[key]!) }
            } else {
                print(config.yaml, terminator: "")
            }
        }
    }
}

/// The key reference of docs/configuration.md, generated from the schema.
func configurationMarkdown() -> String {
    var out = "| key | type / allowed | default | meaning |\n|---|---|---|---|\n"
    for k in ConfigSchema.keys {
        out += "| `\(k.path)` | \(k.kind.expected) | `\(k.defaultValue)` | \(k.doc) |\n"
    }
    return out
}
