import Foundation
import Support

/// The collectives the trainer needs. Every rank of a job calls the same collectives in the
/// same order; buffers are Float32 unless the name says otherwise.
///
/// Two implementations: `MPICommunicator` (OpenMPI, one process per rank under `mpirun`) and
/// `SingleProcessCommunicator` (W = 1, no MPI needed). `makeCommunicator()` picks one.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    var name: String { get }

    func barrier()
    /// Copies `count` floats of `root`'s buffer into every rank's buffer.
    func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int)
    /// Copies `count` bytes of `root`'s buffer into every rank's buffer.
    func broadcastBytes(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int)
    /// In place: buffer[i] = sum over ranks of buffer[i].
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// In place, Float64: buffer[i] = sum over ranks (metrics, checksums).
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// In place: buffer[i] = max over ranks.
    func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// Rank r contributes `counts[r]` floats; `receive` gets all of them in rank order
    /// (rank r's block starts at sum(counts[0..<r])). Counts may differ and may be zero.
    func allGatherV(send: UnsafePointer<Float>, receive: UnsafeMutablePointer<Float>, counts: [Int])
    /// Starts a non-blocking in-place sum of `count` floats (MPI_Iallreduce) and returns at once; the buffer
    /// must not be touched until `waitReductions()`. Every rank starts the same reductions in the same order.
    func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// Lets the started reductions progress (MPI_Testall: OpenMPI moves non-blocking collectives forward only
    /// inside MPI calls); true when all of them are complete.
    @discardableResult func progressReductions() -> Bool
    /// Waits until every started reduction is complete (MPI_Waitall).
    func waitReductions()
    /// Ends every rank of the job: prints `message` on stderr and exits with `code`.
    func abort(message: String, code: Int32) -> Never

    /// The host each rank runs on (index = rank).
    var hostNames: [String] { get }
    /// Collectives this rank has entered so far (a rank that stops before a collective falls behind).
    var collectivesEntered: Int64 { get }
    /// Whether heartbeats (below) can be exchanged while the main thread waits in a collective.
    var supportsHeartbeats: Bool { get }
    /// Sends a heartbeat carrying `value` to `peer` (non-blocking; skipped while the previous one to that
    /// peer is still in flight). Called from one watchdog thread only.
    func sendHeartbeat(to peer: Int, value: Int64)
    /// The heartbeats that arrived since the last call: (sender, value). Watchdog thread only.
    func receiveHeartbeats() -> [(rank: Int, value: Int64)]
}

extension Communicator {
    /// In place: buffer[i] = mean over ranks of buffer[i].
    public func allReduceAverage(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        allReduceSum(buffer, count: count)
        if size > 1 {
            let scale = 1 / Float(size)
            for i in 0..<count { buffer[i] *= scale }
        }
    }

    /// All-gather of one Int per rank.
    public func allGatherCounts(_ local: Int) -> [Int] {
        var values = [Double](repeating: 0, count: size)
        values[rank] = Double(local)
        values.withUnsafeMutableBufferPointer { allReduceSum($0.baseAddress!, count: size) }
        return values.map { Int($0) }
    }

    public var isRoot: Bool { rank == 0 }
}

/// W = 1: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var name: String { "single-process" }
    public func barrier() {}
    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) {}
    public func broadcastBytes(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func allGatherV(send: UnsafePointer<Float>, receive: UnsafeMutablePointer<Float>, counts: [Int]) {
        precondition(counts.count == 1)
        if UnsafePointer(receive) != send { receive.update(from: send, count: counts[0]) }
    }
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func progressReductions() -> Bool { true }
    public func waitReductions() {}
    public func abort(message: String, code: Int32) -> Never {
        standardErrorWrite(Data("error: \(printable(message))\n".utf8))
        exit(code)
    }
    public var hostNames: [String] { [ProcessInfo.processInfo.hostName] }
    public var collectivesEntered: Int64 { 0 }
    public var supportsHeartbeats: Bool { false }
    public func sendHeartbeat(to peer: Int, value: Int64) {}
    public func receiveHeartbeats() -> [(rank: Int, value: Int64)] { [] }
}

/// True when this process was started by `mpirun`/`mpiexec` (OpenMPI sets these variables).
public var launchedByMPI: Bool {
    let env = ProcessInfo.processInfo.environment
    return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
}

/// The MPI communicator under `mpirun`, the single-process one otherwise.
public func makeCommunicator() -> Communicator {
    launchedByMPI ? MPICommunicator.shared : SingleProcessCommunicator()
}
