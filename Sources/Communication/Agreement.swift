import Foundation
import Support

/// Ends the job (an InputError on every rank) when the ranks hold different values for any of `values`
/// (name, value): every rank of a job must run the same specification on the same data with the same binary,
/// or they would train different data orders, or exchange buffers of different sizes. One collective: a
/// 53-bit hash of each value, its maximum and minimum over the ranks. The message names every name that
/// differs, with this rank's value.
public func requireAgreement(_ values: [(String, String)], comm: Communicator, what: String) throws {
    guard comm.size > 1, !values.isEmpty else { return }
    let n = values.count
    var v = [Double](repeating: 0, count: 2 * n)
    for (i, (_, value)) in values.enumerated() {
        let h = Double(Data(value.utf8).withUnsafeBytes { checksum64($0) } >> 11)
        v[i] = h; v[n + i] = -h
    }
    v.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 2 * n) }
    let differing = values.indices.filter { v[$0] != -v[n + $0] }
    guard !differing.isEmpty else { return }
    let shown = differing.prefix(8).map { "\(values[$0].0) (here \(values[$0].1.prefix(80)))" }
    throw InputError("the \(comm.size) ranks were started with different \(what): \(differing.count == 1 ? "one value differs" : "\(differing.count) values differ") across ranks: "
                     + shown.joined(separator: ", ") + (differing.count > 8 ? ", ..." : "")
                     + " [rank \(comm.rank)]; start every rank with the same command, configuration, environment and files")
}

/// A checksum of this executable (ranks on several nodes must run the same build).
public func executableIdentity() -> String {
    guard let f = try? MappedFile(path: "/proc/self/exe") else { return CommandLine.arguments.first ?? "?" }
    return checksumHex(f.bytes)
}
