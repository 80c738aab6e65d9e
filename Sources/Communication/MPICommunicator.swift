import CMPI
import Support
import Foundation

/// OpenMPI implementation. MPI is initialised once per process (`shared`) and finalised at exit.
/// MPI errors are fatal (the default MPI_ERRORS_ARE_FATAL handler), and `abort` calls MPI_Abort,
/// which makes `mpirun` kill every rank: no rank is left waiting in a collective.
///
/// MPI runs with MPI_THREAD_MULTIPLE when the library offers it: the main thread calls the collectives and a
/// watchdog thread exchanges heartbeats on a duplicate communicator (`sendHeartbeat`, `receiveHeartbeats`),
/// so that a rank waiting in a collective can tell which peer stopped answering.
public final class MPICommunicator: Communicator {
    /// MPI, started once; the ranks have compared their commands (`requireOneCommand`).
    public static let shared: MPICommunicator = {
        let started = DispatchSemaphore(value: 0)
        guardStart(started)
        let c = MPICommunicator()
        c.requireOneCommand()
        started.signal()
        return c
    }()

    /// The cladmop command this process runs (`pretrain`, `split`, `help` for a process that only prints help), set
    /// before MPI starts. Every rank compares it at start-up: ranks of one job started with different commands (an
    /// MPMD launch, `mpirun -np 1 cladmop A : -np 1 cladmop B`) would post collectives that do not match.
    nonisolated(unsafe) public static var command = ""
    /// How long MPI may take to start (MPI_Init, which waits for every rank, and the first exchange) before this rank
    /// gives up with a message, in seconds of this process running (a stopped job does not count):
    /// CLADMOP_MPI_START_TIMEOUT, 0 for never; unset or empty: 120.
    public static func startLimit(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Result<Int, InputError> {
        guard let text = env["CLADMOP_MPI_START_TIMEOUT"], !text.isEmpty else { return .success(120) }
        guard let seconds = Int(text), seconds >= 0, seconds <= 86_400 else {
            return .failure(InputError("CLADMOP_MPI_START_TIMEOUT=\(printable(text)): expected a whole number of seconds, 0 to 86400 (0: wait for ever; unset: 120)"))
        }
        return .success(seconds)
    }
    /// Every rank's command (`command`), after start-up.
    public private(set) var commands: [String] = []

    public let rank: Int
    public let size: Int
    public var name: String { "mpi" }
    private let world: MPI_Comm
    public let hostNames: [String]
    public let supportsHeartbeats: Bool
    private var heartbeat: MPI_Comm?
    private let entered = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    private var sendRequests: [MPI_Request?]
    private let sendBuffers: UnsafeMutablePointer<Int64>
    private let receiveBuffer = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
    /// The non-blocking reductions started and not yet waited for (main thread only).
    private var pending: [MPI_Request?] = []
    static let heartbeatTag: Int32 = 7011

    private init() {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, cmpi_thread_multiple(), &provided)
        world = cmpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
        // A mapped input that shrinks while read (`MappedFile`): its line as this communicator's errors, then MPI_Abort.
        setFaultPrefix("error (rank \(r) of \(s)): ")
        setFaultAbort { code in MPI_Abort(cmpi_comm_world(), code) }
        supportsHeartbeats = provided >= cmpi_thread_multiple()
        heartbeat = world
        MPI_Comm_dup(world, &heartbeat)
        entered.initialize(to: 0)
        sendRequests = [MPI_Request?](repeating: cmpi_request_null(), count: Int(s))
        sendBuffers = .allocate(capacity: max(Int(s), 1))
        sendBuffers.initialize(repeating: 0, count: max(Int(s), 1))
        // Every rank's host name and command, 64 bytes each.
        var mine = [CChar](repeating: 0, count: 128)
        gethostname(&mine, 63)
        for (i, byte) in Self.command.utf8.prefix(63).enumerated() { mine[64 + i] = CChar(bitPattern: byte) }
        var all = [CChar](repeating: 0, count: 128 * Int(s))
        MPI_Allgather(&mine, 128, cmpi_char(), &all, 128, cmpi_char(), world)
        let field = { (r: Int, offset: Int) in all.withUnsafeBufferPointer { String(cString: $0.baseAddress! + 128 * r + offset) } }
        hostNames = (0..<Int(s)).map { field($0, 0) }
        commands = (0..<Int(s)).map { field($0, 64) }
        atexit { MPI_Finalize() }
    }

    /// Ends the job (exit 2, rank 0 says which rank runs what) when the ranks were started with different commands:
    /// their first collectives would not match, and a rank that only printed help would leave the others waiting.
    private func requireOneCommand() {
        guard Set(commands).count > 1 else { return }
        if rank == 0 {
            let groups = Dictionary(grouping: commands.indices, by: { commands[$0] })
                .sorted { $0.value[0] < $1.value[0] }
                .map { command, ranks in
                    "`\(printable(command.isEmpty ? "?" : command))` on rank\(ranks.count > 1 ? "s" : "") "
                        + (ranks.count > 8 ? "\(ranks.prefix(8).map(String.init).joined(separator: ", ")), ... (\(ranks.count))" : ranks.map(String.init).joined(separator: ", "))
                }
            abort(message: "the ranks of this job run different cladmop commands: \(groups.joined(separator: "; ")); every rank runs the same command (one mpirun app context, or the same command in each)", code: 2)
        }
        MPI_Barrier(world)     // rank 0 ends the job
        exit(2)
    }

    /// Gives up with a message when MPI has not started `startLimit()` seconds after this call (`started` not
    /// signalled): a process of the job that ended without starting MPI (a program other than cladmop in one app
    /// context) leaves the others in MPI_Init for ever. Counted in one-second waits, so that a job stopped meanwhile
    /// (Ctrl-Z, a scheduler's suspension) does not time out the moment it continues.
    private static func guardStart(_ started: DispatchSemaphore) {
        let limit: Int
        switch startLimit() {
        case .success(let seconds): limit = seconds
        case .failure(let error):
            standardErrorWrite(Data("error: \(error.description)\n".utf8))
            exit(2)
        }
        guard limit > 0 else { return }
        let thread = Thread {
            for _ in 0..<limit where started.wait(timeout: .now() + 1) == .success { return }
            var name = [CChar](repeating: 0, count: 256)
            gethostname(&name, 255)     // not ProcessInfo.hostName, which may ask a name server that cannot be reached
            standardErrorWrite(Data("error: MPI did not start within \(limit) s on host \(String(cString: name)) (pid \(getpid())): a process of this job ended without starting MPI (an app context that runs no cladmop command), or the nodes cannot reach each other (CLADMOP_MPI_START_TIMEOUT sets the limit; 0: wait for ever)\n".utf8))
            _exit(1)
        }
        thread.start()
    }

    public var collectivesEntered: Int64 { entered.pointee }
    /// Counts a collective as entered (read by the watchdog thread; a plain 8-byte store).
    @inline(__always) private func enter() { entered.pointee &+= 1 }

    public func sendHeartbeat(to peer: Int, value: Int64) {
        guard supportsHeartbeats, peer != rank, peer >= 0, peer < size else { return }
        var done: Int32 = 1
        if sendRequests[peer] != cmpi_request_null() { MPI_Test(&sendRequests[peer], &done, cmpi_status_ignore()) }
        guard done != 0 else { return }
        sendBuffers[peer] = value
        MPI_Isend(sendBuffers + peer, 1, cmpi_long_long(), Int32(peer), Self.heartbeatTag, heartbeat, &sendRequests[peer])
    }

    public func receiveHeartbeats() -> [(rank: Int, value: Int64)] {
        guard supportsHeartbeats else { return [] }
        var out: [(rank: Int, value: Int64)] = []
        while true {
            var flag: Int32 = 0
            var status = MPI_Status()
            MPI_Iprobe(cmpi_any_source(), Self.heartbeatTag, heartbeat, &flag, &status)
            guard flag != 0 else { return out }
            MPI_Recv(receiveBuffer, 1, cmpi_long_long(), status.MPI_SOURCE, Self.heartbeatTag, heartbeat, &status)
            out.append((Int(status.MPI_SOURCE), receiveBuffer.pointee))
        }
    }

    public func barrier() { enter(); MPI_Barrier(world) }

    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        enter()
        forEachChunk(count) { offset, n in MPI_Bcast(buffer + offset, n, cmpi_float(), Int32(root), world) }
    }

    public func broadcastBytes(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int) {
        enter()
        forEachChunk(count) { offset, n in MPI_Bcast(buffer + offset, n, cmpi_byte(), Int32(root), world) }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        enter()
        forEachChunk(count) { offset, n in
            MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_sum(), world)
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        enter()
        forEachChunk(count) { offset, n in
            MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_sum(), world)
        }
    }

    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        enter()
        forEachChunk(count) { offset, n in
            MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_max(), world)
        }
    }

    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        enter()
        forEachChunk(count) { offset, n in
            var request: MPI_Request? = cmpi_request_null()
            MPI_Iallreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_sum(), world, &request)
            pending.append(request)
        }
    }

    @discardableResult public func progressReductions() -> Bool {
        guard !pending.isEmpty else { return true }
        var done: Int32 = 0
        MPI_Testall(Int32(pending.count), &pending, &done, cmpi_statuses_ignore())
        return done != 0
    }

    public func waitReductions() {
        guard !pending.isEmpty else { return }
        MPI_Waitall(Int32(pending.count), &pending, cmpi_statuses_ignore())
        pending.removeAll(keepingCapacity: true)
    }

    public func allGatherV(send: UnsafePointer<Float>, receive: UnsafeMutablePointer<Float>, counts: [Int]) {
        precondition(counts.count == size, "allGatherV needs one count per rank")
        enter()
        precondition(counts.reduce(0, +) < Int(Int32.max), "allGatherV exceeds 2^31 floats")
        var recvCounts = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + recvCounts[r - 1] }
        MPI_Allgatherv(UnsafeMutableRawPointer(mutating: send), recvCounts[rank], cmpi_float(),
                       receive, &recvCounts, &displacements, cmpi_float(), world)
    }

    public func abort(message: String, code: Int32) -> Never {
        standardErrorWrite(Data("error (rank \(rank) of \(size)): \(printable(message))\n".utf8))
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
