import CMPI
import Foundation

/// OpenMPI implementation. MPI is initialised once per process (`shared`) and finalised at exit.
/// MPI errors are fatal (the default MPI_ERRORS_ARE_FATAL handler), and `abort` calls MPI_Abort,
/// which makes `mpirun` kill every rank: no rank is left waiting in a collective.
public final class MPICommunicator: Communicator {
    public static let shared = MPICommunicator()

    public let rank: Int
    public let size: Int
    public var name: String { "mpi" }
    private let world: MPI_Comm

    private init() {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, cmpi_thread_funneled(), &provided)
        world = cmpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
        atexit { MPI_Finalize() }
    }

    public func barrier() { MPI_Barrier(world) }

    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        forEachChunk(count) { offset, n in MPI_Bcast(buffer + offset, n, cmpi_float(), Int32(root), world) }
    }

    public func broadcastBytes(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int) {
        forEachChunk(count) { offset, n in MPI_Bcast(buffer + offset, n, cmpi_byte(), Int32(root), world) }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        forEachChunk(count) { offset, n in
            MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_sum(), world)
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        forEachChunk(count) { offset, n in
            MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_sum(), world)
        }
    }

    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        forEachChunk(count) { offset, n in
            MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_max(), world)
        }
    }

    public func allGatherV(send: UnsafePointer<Float>, receive: UnsafeMutablePointer<Float>, counts: [Int]) {
        precondition(counts.count == size, "allGatherV needs one count per rank")
        precondition(counts.reduce(0, +) < Int(Int32.max), "allGatherV exceeds 2^31 floats")
        var recvCounts = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + recvCounts[r - 1] }
        MPI_Allgatherv(UnsafeMutableRawPointer(mutating: send), recvCounts[rank], cmpi_float(),
                       receive, &recvCounts, &displacements, cmpi_float(), world)
    }

    public func abort(message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("error (rank \(rank) of \(size)): \(message)\n".utf8))
        MPI_Abort(world, code)
        exit(code)
    }

    /// MPI counts are Int32: split large buffers.
    private func forEachChunk(_ count: Int, _ body: (Int, Int32) -> Void) {
        let chunk = 1 << 30
        var offset = 0
        while offset < count {
            let n = min(chunk, count - offset)
            body(offset, Int32(n))
            offset += n
        }
    }
}
