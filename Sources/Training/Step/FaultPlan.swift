import Foundation
import Support

/// Faults injected on purpose, for the reliability and negative-control tests; parsed once per command from
/// the environment (`FaultPlan.fromEnvironment()`, which refuses a value of no form below) and handed to the code that acts on them.
///
/// CLADMOP_FAULT =
/// - `drop_remote_columns`: the step reports the global loss but backpropagates the loss of its own pairs only
///   (the bug of a rank whose gradient never sees the other ranks' columns); `no_world_scale`: the step forgets to scale dL/df_DM by W (the average of
///   the ranks' gradients is then 1/W of the true one). Both are wrong on purpose: negative controls.
/// - `buckets_before_backward`: with `train.bucket_mb` > 0, every gradient bucket's all-reduce is started before
///   backward has written it (the bug of a bucket started before its tensors are complete): a negative control.
/// - `crash:RANK:STEP`, `throw:RANK:STEP`, `stall:RANK:STEP`: before global step STEP (1-based) of pretraining the
///   rank is killed, throws an input error, or stops making progress (pretrain only, as `checkpoint_crash` and
///   `diverge`: other commands take no steps or checkpoints of that kind and ignore them).
/// - `checkpoint_crash:before|between|pointer[:STEP]`: the process is killed while writing a checkpoint (of step
///   STEP, or any): "between" is after the tensors file is complete and before its JSON, "pointer" after both and
///   before the run's checkpoints/best.json.
/// - `file_size_limit:BYTES`: RLIMIT_FSIZE for every command, once MPI is up (a write past BYTES fails with EFBIG,
///   as on a full disk).
/// - `stop:RANK:ACTIVITY`: the rank stops itself (SIGSTOP) at its first progress point of a watchdog's ACTIVITY
///   ("fine-tuning", "featurizing", "scoring", "embedding", "training"; `Watchdog.injectedStop`), or once its
///   configuration is read ("startup": before the first collective, where only the job's watchdog runs).
/// - `diverge:STEP`: after global step STEP's update every parameter is multiplied by 1e30 (finite, but the next
///   forward overflows): a model that diverged, on every rank alike, at a step of the test's choosing.
/// - `linger:SECONDS`: rank 0 sleeps SECONDS once its command's work is done, before the ranks leave together
///   (as when rank 0 alone writes long outputs while the others have nothing left to do).
/// CLADMOP_FAULT_ONCE = FILE: the crash/throw/stall fault fires only if FILE does not exist, and creates it
/// (a supervised restart does not fail again at the same step).
/// CLADMOP_DUMP_GRADIENT = FILE: rank 0 writes the averaged gradient of the first step (Float32, raw).
public struct FaultPlan: Sendable {
    public enum StepFault: Sendable, Equatable { case crash, throwError, stall }
    public enum CheckpointStage: String, Sendable { case before, between, pointer }

    public var localGradientOnly = false
    public var noWorldScale = false
    public var bucketsBeforeBackward = false
    public var stepFault: (kind: StepFault, rank: Int, step: Int)?
    public var checkpointCrash: (stage: CheckpointStage, step: Int?)?
    public var fileSizeLimit: Int?
    public var stop: (rank: Int, activity: String)?
    public var linger: UInt32?
    public var divergeAfter: Int?
    public var dumpGradient: String?
    public var onceMarker: String?

    /// No fault: what every real run uses.
    public static let none = FaultPlan()

    public init() {}

    /// The faults CLADMOP_FAULT names (none when it is unset or empty). A value of no form above is an error, not
    /// "no fault": a misspelt fault would run the command without it, and a test relying on it would pass for the
    /// wrong reason. RANK is not compared with the job's size: the Launch scripts run one-rank commands (config --get,
    /// check-hostfile) in the environment of the job they start.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> FaultPlan {
        var plan = FaultPlan()
        plan.dumpGradient = env["CLADMOP_DUMP_GRADIENT"]
        guard let f = env["CLADMOP_FAULT"], !f.isEmpty else { return plan }     // CLADMOP_FAULT= (cleared): no fault
        let parts = f.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let activities = ["training", "fine-tuning", "featurizing", "scoring", "embedding", "startup"]
        /// parts[i] as a whole number of at least `low`, nil when absent or not one.
        func count(_ i: Int, from low: Int) -> Int? { parts.indices.contains(i) ? Int(parts[i]).flatMap { $0 >= low ? $0 : nil } : nil }
        var valid = true
        switch (parts[0], parts.count) {
        case ("drop_remote_columns", 1): plan.localGradientOnly = true
        case ("no_world_scale", 1): plan.noWorldScale = true
        case ("buckets_before_backward", 1): plan.bucketsBeforeBackward = true
        case ("crash", 3), ("throw", 3), ("stall", 3):
            guard let rank = count(1, from: 0), let step = count(2, from: 1) else { valid = false; break }
            if let once = env["CLADMOP_FAULT_ONCE"] {
                if FileManager.default.fileExists(atPath: once) { break }     // fired before: a restart runs clean
                plan.onceMarker = once
            }
            plan.stepFault = (parts[0] == "crash" ? .crash : parts[0] == "throw" ? .throwError : .stall, rank, step)
        case ("checkpoint_crash", 2), ("checkpoint_crash", 3):
            guard let stage = CheckpointStage(rawValue: parts[1]) else { valid = false; break }
            if parts.count == 3 { guard let step = count(2, from: 0) else { valid = false; break }; plan.checkpointCrash = (stage, step) }
            else { plan.checkpointCrash = (stage, nil) }
        case ("file_size_limit", 2): plan.fileSizeLimit = count(1, from: 0); valid = plan.fileSizeLimit != nil
        case ("stop", 3):
            guard let rank = count(1, from: 0), activities.contains(parts[2]) else { valid = false; break }
            plan.stop = (rank, parts[2])
        case ("linger", 2): plan.linger = UInt32(parts[1]); valid = plan.linger != nil
        case ("diverge", 2): plan.divergeAfter = count(1, from: 0); valid = plan.divergeAfter != nil
        default: valid = false
        }
        guard valid else {
            throw InputError("CLADMOP_FAULT=\(printable(f)): expected drop_remote_columns, no_world_scale, buckets_before_backward, "
                + "crash|throw|stall:RANK:STEP, checkpoint_crash:before|between|pointer[:STEP], file_size_limit:BYTES, "
                + "stop:RANK:\(activities.joined(separator: "|")), linger:SECONDS or diverge:STEP (a fault injected on purpose, for tests)")
        }
        return plan
    }

    /// Applies the process-wide limits (call once, after MPI is up).
    public func applyLimits() {
        guard let bytes = fileSizeLimit else { return }
        var limit = rlimit(rlim_cur: rlim_t(bytes), rlim_max: rlim_t(bytes))
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limit)
    }

    /// Fires the crash/throw/stall fault planned for this rank before global step `step` (1-based).
    public func beforeStep(_ step: Int, rank: Int) throws {
        guard let f = stepFault, f.rank == rank, f.step == step else { return }
        if let m = onceMarker { _ = FileManager.default.createFile(atPath: m, contents: nil) }
        switch f.kind {
        case .crash: kill(getpid(), SIGKILL)
        case .throwError: throw InputError("injected error on rank \(rank) at step \(step) (CLADMOP_FAULT)")
        case .stall: while true { sleep(60) }
        }
    }

    /// Kills the process at `stage` of writing the checkpoint of `step`, when planned.
    public func duringCheckpoint(_ stage: CheckpointStage, step: Int) {
        guard let c = checkpointCrash, c.stage == stage, c.step == nil || c.step == step else { return }
        kill(getpid(), SIGKILL)
    }
}
