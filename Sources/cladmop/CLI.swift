import ArgumentParser
import Communication
import Foundation

@main
struct Cladmop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cladmop",
        abstract: "Distributed CLaDMoP contrastive pretraining and trial outcome prediction on OpenMPI + OpenBLAS.",
        discussion: "Run under `mpirun -np N cladmop ...` for N ranks; without mpirun it runs as one rank.",
        subcommands: [Bench.self])
}

/// An error in what the user gave (a file, a flag, a config key): exit status 2.
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Runs `body` on this rank; any error ends the whole job with its message (MPI_Abort under mpirun):
/// exit status 2 for user errors, 1 otherwise. No rank is left waiting in a collective.
func runJob(_ body: (Communicator) throws -> Void) {
    let comm = makeCommunicator()
    do {
        try body(comm)
    } catch let error as UserError {
        comm.abort(message: error.description, code: 2)
    } catch {
        comm.abort(message: "\(error)", code: 1)
    }
}

/// Peak resident set size of this process in MiB (getrusage).
func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Monotonic seconds.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// JSON text of a dictionary with sorted keys.
func jsonString(_ object: Any) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}
