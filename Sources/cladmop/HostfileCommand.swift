import ArgumentParser
import Config

/// `cladmop check-hostfile FILE [-np N]`: validates a hostfile before a launcher hands it to mpirun.
struct CheckHostfile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-hostfile",
        abstract: "Check an OpenMPI hostfile (HOST [slots=N] [max_slots=M] per line) and that N ranks fit in it.")

    @Argument(help: "The hostfile.")
    var file: String

    @Option(name: .customLong("np", withSingleDash: true), parsing: .unconditional, help: "Number of ranks that must fit in the slots.")
    var ranks: Int?

    func run() throws {
        runJob { comm in
            guard comm.isRoot else { return }     // under mpirun: one check, by rank 0
            let hostfile = try Hostfile(path: file)
            if let ranks { try hostfile.check(ranks: ranks) }
            print("\(file): \(hostfile.hosts.count) host(s), \(hostfile.totalSlots) slot(s)" + (ranks.map { "; \($0) rank(s) fit" } ?? ""))
        }
    }
}
