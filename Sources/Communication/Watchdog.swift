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
///
/// Waiting on output is not a stall: a rank whose main thread is blocked writing its standard output or error (an
/// mpirun stopped with SIGSTOP or under a debugger stops reading the ranks' terminals; a single process piped into
/// a reader that does not read) holds its clock, and says so in its heartbeat (a negative count), which rank 0
/// passes on, so that the ranks waiting for it in a collective hold theirs too: the job goes on once the output is
/// read again, instead of being ended as stuck (a stranger's probe: after SIGCONT to an mpirun stopped for 40 s, a
/// healthy run was ended, "rank 0 is stuck before collective ...").
public final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var lastBeat = monotonicSeconds()
    private var slowest = 0.0
    private var running = true
    private let policy: StallPolicy
    private let comm: Communicator
    private let activity: String
    private let judgeLaggards: Bool
    /// The job's own watchdog (`guardJob`), not an activity's.
    private let isJob: Bool
    /// An activity's watchdog counted in `activities` until it stops.
    private var counted = false
    /// The thread that made the watchdog (the one whose progress it watches): its /proc folder, "PID/task/TID".
    private let watchedThread = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")

    /// `activity` names what makes progress in the message ("training", "featurizing"). `judgeLaggards`: a peer whose
    /// heartbeats arrive but that has entered fewer collectives counts as stuck (false where ranks work at their own
    /// pace for long between collectives, as in featurizing: only a peer that stopped answering ends the job there).
    public convenience init(policy: StallPolicy, comm: Communicator, activity: String = "training", judgeLaggards: Bool = true) {
        self.init(policy: policy, comm: comm, activity: activity, judgeLaggards: judgeLaggards, isJob: false)
    }

    private init(policy: StallPolicy, comm: Communicator, activity: String, judgeLaggards: Bool, isJob: Bool) {
        self.policy = policy
        self.comm = comm
        self.activity = activity
        self.judgeLaggards = judgeLaggards
        self.isJob = isJob
        // One watchdog at a time exchanges heartbeats: an activity's pauses the job's until it stops.
        if !isJob {
            counted = true
            Self.activities += 1
            Self.job?.stop(); Self.job = nil
        }
        guard policy != .off else { running = false; return }
        let thread = Thread { [self] in watch() }
        thread.start()
    }

    /// The watchdog of work that ranks do at their own pace between collectives (featurizing, scoring, embedding):
    /// only a peer that stopped answering ends the job; off on one rank, and without heartbeats (no
    /// MPI_THREAD_MULTIPLE: a peer busy with its share, or rank 0 writing, could not be told from one that stopped).
    public static func ofPeers(_ policy: StallPolicy, comm: Communicator, activity: String) -> Watchdog {
        Watchdog(policy: comm.size > 1 && comm.supportsHeartbeats ? policy : .off, comm: comm, activity: activity, judgeLaggards: false)
    }

    /// A fault injected for the reliability tests (`CLADMOP_FAULT=stop:RANK:ACTIVITY`, read once per command by
    /// `FaultPlan`): rank RANK stops itself with SIGSTOP (every thread, heartbeats too, as `kill -STOP`) at its first
    /// progress point of ACTIVITY (an `activity`: "training", "fine-tuning", "featurizing", "scoring", "embedding").
    nonisolated(unsafe) public static var injectedStop: (rank: Int, activity: String)?

    /// A progress point (a finished step, evaluation or checkpoint).
    public func beat() {
        lock.lock()
        let now = monotonicSeconds()
        slowest = max(slowest, now - lastBeat)
        lastBeat = now
        lock.unlock()
        if let stop = Self.injectedStop, stop.rank == comm.rank, stop.activity == activity {
            Self.injectedStop = nil
            raise(SIGSTOP)
        }
    }

    /// After `stop` returns the thread makes no further MPI call (the heartbeat exchange runs under the lock),
    /// so MPI can be finalised. An activity's watchdog hands over to the job's (`guardJob`) when it was the last.
    public func stop() {
        lock.lock(); running = false; lock.unlock()
        if counted {
            counted = false
            Self.activities -= 1
            Self.resumeJob()
        }
    }

    // The job's watchdog: peers only (a rank that stopped answering ends the job), running whenever no activity's
    // watchdog runs: before the first (reading inputs, the first collectives), between two, after the last. Started
    // once the configuration is read (its train.stall_timeout; off on one rank and without heartbeats, i.e. without
    // MPI_THREAD_MULTIPLE), ended by `endJob` once every rank is done (runJob's barrier). Main thread only.
    nonisolated(unsafe) private static var jobPolicy: StallPolicy = .off
    nonisolated(unsafe) private static var jobComm: Communicator?
    nonisolated(unsafe) private static var job: Watchdog?
    nonisolated(unsafe) private static var activities = 0

    /// Starts the job's watchdog (once per process); `CLADMOP_FAULT=stop:RANK:startup` stops rank RANK right after.
    public static func guardJob(_ policy: StallPolicy, comm: Communicator) {
        guard jobComm == nil, comm.size > 1, comm.supportsHeartbeats else { return }
        jobPolicy = policy; jobComm = comm
        resumeJob()
        if let stop = injectedStop, stop.rank == comm.rank, stop.activity == "startup" {
            injectedStop = nil
            raise(SIGSTOP)
        }
    }

    /// Stops the job's watchdog for good (before MPI is finalised).
    public static func endJob() {
        job?.stop(); job = nil
        jobComm = nil; jobPolicy = .off
    }

    private static func resumeJob() {
        guard activities == 0, job == nil, jobPolicy != .off, let comm = jobComm else { return }
        job = Watchdog(policy: jobPolicy, comm: comm, activity: "job", judgeLaggards: false, isJob: true)
    }

    /// The longest a rank holds its clock for output that is not read (`limit`: the stall limit): then the job ends,
    /// saying so (a pager that never reads again, a log on a hung file system, an mpirun left stopped).
    static func outputWaitLimit(_ limit: Double) -> Double { max(10 * limit, 1800) }

    private func watch() {
        let start = monotonicSeconds()
        var heard = [Double](repeating: start, count: comm.size), count = [Int64](repeating: 0, count: comm.size)
        var writing = [Bool](repeating: false, count: comm.size)
        var previous = start, holdingSince: Double? = nil
        while true {
            sleep(1)
            // Read before the lock, which `beat` takes on the main thread.
            let blocked = Self.blockedWritingStandardStream(thread: watchedThread)
            lock.lock()
            guard running else { lock.unlock(); return }
            let slow = slowest
            let now = monotonicSeconds(), mine = comm.collectivesEntered
            // This process itself was suspended (SIGSTOP, a frozen host): its view of the others is stale; let the
            // ranks that kept running judge.
            if now - previous > 5 { heard = heard.map { _ in now }; previous = now; lock.unlock(); continue }
            previous = now
            // Waiting on output: this rank's (its watched thread blocked writing fd 1 or 2), or, told by heartbeats,
            // another's (rank 0 passes on what any rank said), counted only while that rank is heard from: a rank
            // that stops answering after saying so is judged as any other.
            writing[comm.rank] = blocked
            func waitingRanks() -> [Int] { writing.indices.filter { writing[$0] && ($0 == comm.rank || now - heard[$0] <= 3) } }
            if comm.supportsHeartbeats && comm.size > 1 {
                let said = (comm.isRoot ? !waitingRanks().isEmpty : blocked) ? -mine - 1 : mine
                if comm.isRoot { for peer in 1..<comm.size { comm.sendHeartbeat(to: peer, value: said) } }
                else { comm.sendHeartbeat(to: 0, value: said) }
                for (rank, value) in comm.receiveHeartbeats() { heard[rank] = now; count[rank] = value < 0 ? -value - 1 : value; writing[rank] = value < 0 }
            }
            let waiting = waitingRanks()
            if waiting.isEmpty { holdingSince = nil } else {
                holdingSince = holdingSince ?? now
                lastBeat = now     // the clock held, not a progress point (slowest unchanged)
            }
            let last = lastBeat
            lock.unlock()
            guard let limit = policy.limit(slowest: slow) else { continue }
            let idle = now - last
            let peers = comm.isRoot ? Array(1..<comm.size) : [0]
            func who(_ r: Int) -> String { "rank \(r) (host \(comm.hostNames.indices.contains(r) ? comm.hostNames[r] : "?"))" }
            let why = String(format: "limit %.0f s: %@; train.stall_timeout", limit, policy == .adaptive(minimum: 60, factor: 10)
                ? String(format: "max(60 s, 10 x the slowest step, %.1f s)", slow) : "fixed")
            let silent: [Int], behind: [Int]
            if let since = holdingSince {
                // Held: a peer that stopped answering for longer than the limit still ends the job, and so does output
                // that is not read for `outputWaitLimit`.
                let held = now - since
                if held > Self.outputWaitLimit(limit) {
                    let whose = blocked ? "its own standard output or error (\(who(comm.rank)))"
                        : "the output of \(comm.isRoot ? waiting.map(who).joined(separator: ", ") : "a rank (rank 0 says so)")"
                    comm.abort(message: String(format: "no %@ progress for %.0f s on %@: waiting for %@ to be read (is mpirun stopped, or the output not read?); a wait for output ends the job after max(10 x the limit, 30 min) (%@)",
                                               activity, held, who(comm.rank), whose, why), code: 1)
                }
                silent = peers.filter { now - heard[$0] > max(limit, 3) }
                guard !silent.isEmpty else { continue }
                behind = []
            } else {
                guard idle > limit else { continue }
                // Heartbeats come every second: a peer is silent after half the limit, and never before 3 s.
                silent = peers.filter { now - heard[$0] > max(min(limit, idle) / 2, 3) }
                behind = judgeLaggards ? peers.filter { !silent.contains($0) && count[$0] < mine } : []
                if !judgeLaggards && silent.isEmpty { continue }
            }
            var culprits: [String] = silent.map { "\(who($0)) stopped answering: no heartbeat for \(Int(now - heard[$0])) s (stopped, killed or unreachable)" }
            culprits += behind.map { "\(who($0)) is stuck before collective \(mine) (it entered \(count[$0]))" }
            if culprits.isEmpty && !comm.isRoot && comm.supportsHeartbeats && idle < limit + 15 { continue }   // rank 0 names it
            // A peer that stopped answering may sit behind a network partition: OpenMPI 4's mpirun then waits for
            // that node's daemon forever (measured: past 280 s) after MPI_Abort. A detached helper interrupts the
            // mpirun this rank descends from (its own host's launcher) if it is still there 10 s after the abort.
            if !silent.isEmpty { endLauncherLater(grace: 10) }
            let message = culprits.isEmpty
                ? String(format: "no %@ progress for %.0f s on %@ (a rank stalled, a collective is stuck, or the work is slower than the limit: if so, raise train.stall_timeout or set 0; %@)", activity, idle, who(comm.rank), why)
                : String(format: "no %@ progress for %.0f s on %@: %@ (%@)", activity, holdingSince == nil ? idle : silent.map { now - heard[$0] }.max() ?? idle,
                         who(comm.rank), culprits.joined(separator: "; "), why)
            comm.abort(message: message, code: 1)
        }
    }

    /// Whether `thread` of this process is blocked in a write to its standard output or error (Linux: the system
    /// call it sleeps in, /proc/PID/task/TID/syscall; false where that cannot be read).
    static func blockedWritingStandardStream(thread: String?) -> Bool {
        guard let thread, let text = try? String(contentsOfFile: "/proc/\(thread)/syscall", encoding: .utf8) else { return false }
        return isWriteToStandardStream(syscallLine: text)
    }

    /// Whether a /proc/PID/task/TID/syscall line ("NR ARG1 ARG2 ... SP PC"; "running"; "-1 SP PC" outside a system
    /// call) is a write, pwrite or writev to descriptor 1 or 2.
    static func isWriteToStandardStream(syscallLine text: String) -> Bool {
        #if arch(x86_64)
        let writes: Set<Int> = [1, 18, 20]      // write, pwrite64, writev
        #elseif arch(arm64)
        let writes: Set<Int> = [64, 66, 68]     // write, writev, pwrite64
        #else
        let writes: Set<Int> = []
        #endif
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let call = Int(fields[0]), writes.contains(call), fields[1].hasPrefix("0x"),
              let fd = Int(fields[1].dropFirst(2), radix: 16) else { return false }
        return fd == 1 || fd == 2
    }

    /// Finds the nearest ancestor process named mpirun, orterun or mpiexec (on this host: the rank runs on the
    /// launcher's host, directly or under a daemon started by a local launch agent) and starts a detached helper
    /// (its own session, so it survives this rank's end) that, if that process still runs `grace` seconds later,
    /// sends it SIGKILL (not SIGINT: with its abort in progress, OpenMPI 4.1's mpirun takes a SIGINT for "ctrl-c
    /// again to forcibly terminate" and crashed in PMIx_Finalize, with a backtrace as the job's last words).
    private func endLauncherLater(grace: Int) {
        var pid = getppid()
        var launcher: (pid: Int32, name: String, start: String)?
        for _ in 0..<8 where pid > 1 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { break }
            let name = String(stat[stat.index(after: open)..<close])
            // The fields after the name: state (field 3), parent (4), ..., start time (22, in clock ticks since boot).
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if ["mpirun", "orterun", "mpiexec"].contains(name) {
                if fields.count > 19 { launcher = (pid, name, String(fields[19])) }
                break
            }
            guard fields.count > 1, let parent = Int32(fields[1]) else { break }
            pid = parent
        }
        guard let launcher else { return }
        let p = launcher.pid, n = launcher.name
        // The same process, not a later one given its pid: its start time is compared too (a launcher that ended in
        // time, and a new mpirun that reuses the pid within the grace, is left alone).
        let script = "sleep \(grace); s=$(sed 's/.*) //' /proc/\(p)/stat 2>/dev/null | cut -d' ' -f20); "
            + "[ \"$(cat /proc/\(p)/comm 2>/dev/null)\" = \(n) ] && [ \"$s\" = \(launcher.start) ] || exit 0; "
            + "echo \"cladmop watchdog: \(n) (pid \(p)) still runs \(grace) s after the abort (a node it cannot reach?): SIGKILL\" >&2; "
            + "kill -KILL \(p)"
        let argv = ["/usr/bin/setsid", "-f", "/bin/sh", "-c", script]
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var child: pid_t = 0
        if posix_spawn(&child, argv[0], nil, nil, &cArgs, environ) == 0 {
            var status: Int32 = 0
            waitpid(child, &status, 0)   // setsid -f returns at once, its child goes on in its own session
            standardErrorWrite(Data("watchdog: \(n) (pid \(p)) will be interrupted if it has not ended \(grace) s after this abort\n".utf8))
        }
    }
}
