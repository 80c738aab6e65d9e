import Communication
import Foundation
import Support

/// When a rank counts as stalled (`train.stall_timeout`).
public enum StallPolicy: Equatable, Sendable {
    case off
    /// A fixed number of seconds without progress.
    case fixed(Double)
    /// max(`minimum`, `factor` x the longest interval between progress points seen so far).
    case adaptive(minimum: Double, factor: Double)

    /// -1: adaptive (max(60 s, 10 x the slowest step)); 0: off; s > 0: s seconds.
    public init(stallTimeout: Int) {
        self = stallTimeout < 0 ? .adaptive(minimum: 60, factor: 10) : stallTimeout == 0 ? .off : .fixed(Double(stallTimeout))
    }

    func limit(slowest: Double) -> Double? {
        switch self {
        case .off: return nil
        case .fixed(let s): return s
        case .adaptive(let minimum, let factor): return max(minimum, factor * slowest)
        }
    }
}

/// Ends the job when this rank makes no progress for longer than the policy allows (a stalled peer leaves the
/// others waiting in a collective forever), naming the rank that stopped: MPI_Abort with the message.
///
/// A thread beside the training loop exchanges heartbeats every second, carrying the number of collectives the
/// rank has entered: every rank sends to rank 0, rank 0 sends to every rank. When this rank has been waiting
/// past the limit, the culprit is a rank whose heartbeats stopped (stopped, killed, or its link down) or whose
/// collective count is behind (its main thread stuck before a collective). Rank 0 sees every rank and names
/// them; another rank names rank 0 when rank 0 went silent, and otherwise leaves rank 0 a head start to do so.
final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var lastBeat = monotonicSeconds()
    private var slowest = 0.0
    private var running = true
    private let policy: StallPolicy
    private let comm: Communicator

    init(policy: StallPolicy, comm: Communicator) {
        self.policy = policy
        self.comm = comm
        guard policy != .off else { running = false; return }
        let thread = Thread { [self] in watch() }
        thread.start()
    }

    /// A progress point (a finished step, evaluation or checkpoint).
    func beat() {
        lock.lock()
        let now = monotonicSeconds()
        slowest = max(slowest, now - lastBeat)
        lastBeat = now
        lock.unlock()
    }

    /// After `stop` returns the thread makes no further MPI call (the heartbeat exchange runs under the lock),
    /// so MPI can be finalised.
    func stop() { lock.lock(); running = false; lock.unlock() }

    private func watch() {
        let start = monotonicSeconds()
        var heard = [Double](repeating: start, count: comm.size), count = [Int64](repeating: 0, count: comm.size)
        var previous = start
        while true {
            sleep(1)
            lock.lock()
            guard running else { lock.unlock(); return }
            let last = lastBeat, slow = slowest
            let now = monotonicSeconds(), mine = comm.collectivesEntered
            // This process itself was suspended (SIGSTOP, a frozen host): its view of the others is stale; let the
            // ranks that kept running judge.
            if now - previous > 5 { heard = heard.map { _ in now }; previous = now; lock.unlock(); continue }
            previous = now
            if comm.supportsHeartbeats && comm.size > 1 {
                if comm.isRoot { for peer in 1..<comm.size { comm.sendHeartbeat(to: peer, value: mine) } }
                else { comm.sendHeartbeat(to: 0, value: mine) }
                for (rank, value) in comm.receiveHeartbeats() { heard[rank] = now; count[rank] = value }
            }
            lock.unlock()
            guard let limit = policy.limit(slowest: slow), now - last > limit else { continue }
            let idle = now - last
            let peers = comm.isRoot ? Array(1..<comm.size) : [0]
            let silent = peers.filter { now - heard[$0] > min(limit, idle) / 2 }
            let behind = peers.filter { !silent.contains($0) && count[$0] < mine }
            func who(_ r: Int) -> String { "rank \(r) (host \(comm.hostNames.indices.contains(r) ? comm.hostNames[r] : "?"))" }
            var culprits: [String] = silent.map { "\(who($0)) stopped answering: no heartbeat for \(Int(now - heard[$0])) s (stopped, killed or unreachable)" }
            culprits += behind.map { "\(who($0)) is stuck before collective \(mine) (it entered \(count[$0]))" }
            let why = String(format: "limit %.0f s: %@; train.stall_timeout", limit, policy == .adaptive(minimum: 60, factor: 10)
                ? String(format: "max(60 s, 10 x the slowest step, %.1f s)", slow) : "fixed")
            if culprits.isEmpty && !comm.isRoot && comm.supportsHeartbeats && idle < limit + 15 { continue }   // rank 0 names it
            let message = culprits.isEmpty
                ? String(format: "no training progress for %.0f s on %@ (a rank stalled or a collective is stuck; %@)", idle, who(comm.rank), why)
                : String(format: "no training progress for %.0f s on %@: %@ (%@)", idle, who(comm.rank), culprits.joined(separator: "; "), why)
            comm.abort(message: message, code: 1)
        }
    }
}
