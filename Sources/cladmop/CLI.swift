import Support
import ArgumentParser
import Communication
import Config
import Foundation
import NN
import Training
import TrialData

@main
struct Cladmop: ParsableCommand {
    /// Like ParsableCommand.main, but every usage or input error exits with status 2.
    static func main() {
        // What another command writes at an output's path from now on is "written meanwhile" (OutputGroup).
        markProcessStart()
        // A closed stdout or stderr (>&-) gets /dev/null: an output file opened later would take its number.
        openClosedStandardDescriptors()
        // A write past RLIMIT_FSIZE then fails with EFBIG, reported like a full disk, instead of killing the rank.
        signal(SIGXFSZ, SIG_IGN)
        // A reader of the standard output that went away (`| head -1`) is EPIPE, not the end of the command: its
        // results (--json, a run's checkpoints) are written all the same (standardOutputFailure).
        signal(SIGPIPE, SIG_IGN)
        // An interrupted write leaves no hidden temporary file beside its output.
        TemporaryFiles.installSignalHandlers()
        // OpenBLAS chooses its kernels when it loads: on a CPU it does not know it falls back to slow SSE3 ones.
        // Then restart once with OPENBLAS_CORETYPE naming the kernels this CPU supports (before MPI starts, so
        // under mpirun too); if the exec fails, go on with OpenBLAS's choice.
        if let core = blasCoreTypeOverride() {
            setenv("OPENBLAS_CORETYPE", core, 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)
        }
        if let message = GEMMBackend.environmentError {
            standardErrorWrite(Data(("error: " + message + "\n").utf8))
            Foundation.exit(2)
        }
        // Subnormal floats flushed to zero in this thread before MPI starts its threads (they inherit the mode), and
        // in OpenBLAS's worker threads (restarted): the CPU handles them in microcode (Denormals, docs/performance.md).
        guard let flush = Denormals.requested() else {
            let value = ProcessInfo.processInfo.environment["CLADMOP_DENORMALS"] ?? ""
            standardErrorWrite(Data("error: CLADMOP_DENORMALS=\(value): expected flush or keep\n".utf8))
            Foundation.exit(2)
        }
        Denormals.setFlushToZero(flush)
        // Read only where MPI starts (under mpirun), checked everywhere: a bad value is said before it could matter.
        if case .failure(let error) = MPICommunicator.startLimit() {
            standardErrorWrite(Data("error: \(error.description)\n".utf8))
            Foundation.exit(2)
        }
        if let message = argumentEncodingError() {
            standardErrorWrite(Data(("error: " + message + "\n").utf8))
            Foundation.exit(2)
        }
        // `cladmop help NAME` with a NAME that is no subcommand: ArgumentParser prints the overview and exits 0.
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "help", let name = arguments.dropFirst().first, name != "help", !name.hasPrefix("-"),
           !configuration.subcommands.contains(where: { $0._commandName == name }) {
            let names = configuration.subcommands.map { $0._commandName }.joined(separator: ", ")
            standardErrorWrite(Data("error: help: no subcommand '\(printable(name))' (expected one of \(names))\n".utf8))
            Foundation.exit(2)
        }
        do {
            var command = try parseAsRoot()
            if let warning = repeatedOptionWarning(type(of: command)) { standardErrorWrite(Data(warning.utf8)) }
            MPICommunicator.command = type(of: command)._commandName
            try command.run()
            // What was printed is flushed: a result printed into a full disk (config --get X > f, compare > table.md) is
            // an error, as any output that cannot be written.
            if let failure = standardOutputFailure() {
                standardErrorWrite(Data("error: the standard output could not be written: \(failure)\n".utf8))
                Foundation.exit(2)
            }
        } catch {
            if exitCode(for: error) == .success {
                // Help under mpirun: the other ranks may have started a job, and wait for this one in MPI_Init.
                if launchedByMPI {
                    MPICommunicator.command = "help"
                    _ = MPICommunicator.shared
                }
                // As exit(withError:) does, with the standard output checked: help into a full disk is an error.
                let text = fullMessage(for: error)
                if !text.isEmpty { print(text) }
                if let failure = standardOutputFailure() {
                    standardErrorWrite(Data("error: the standard output could not be written: \(failure)\n".utf8))
                    Foundation.exit(2)
                }
                Foundation.exit(0)
            }
            // ArgumentParser says "Error:"; every other error of cladmop "error:".
            var message = printable(fullMessage(for: error))
            if message.hasPrefix("Error: ") { message = "error: " + message.dropFirst("Error: ".count) }
            standardErrorWrite(Data((message + "\n").utf8))
            Foundation.exit(2)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "cladmop",
        abstract: "Distributed CLaDMoP contrastive pretraining and trial outcome prediction on OpenMPI + OpenBLAS.",
        discussion: "Run under `mpirun -np N cladmop ...` for N ranks; without mpirun it runs as one rank.",
        // What a file written by this binary is, and what it reads: the formats, not a release number.
        version: "cladmop: checkpoint format \(CheckpointMeta.currentVersion), feature store format \(FeatureStore.version) "
            + "(featurizer \(FeatureStore.featurizerVersion))",
        subcommands: [Featurize.self, Pretrain.self, Finetune.self, Evaluate.self, Predict.self, Embed.self, Baseline.self, Compare.self, Encode.self, Synth.self, Split.self, Bench.self, ShowConfig.self, CheckHostfile.self, SweepReport.self])
}

/// The first command-line argument that is not UTF-8 text, named with its byte offset. Swift's strings repair such a
/// byte (to U+FFFD), so `--output "o\xff.store"` had written a file of another name, and a path of the file system
/// that holds the byte could not be named at all.
func argumentEncodingError() -> String? {
    for index in 1..<max(1, Int(CommandLine.argc)) {
        guard let raw = CommandLine.unsafeArgv[index] else { continue }
        let bytes = UnsafeBufferPointer(start: raw, count: strlen(raw)).map { UInt8(bitPattern: $0) }
        let text = String(decoding: bytes, as: UTF8.self)
        guard Array(text.utf8) != bytes else { continue }
        let offset = zip(bytes, text.utf8).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(bytes.count, text.utf8.count) - 1
        return "argument \(index) (\(printable(text))) is not UTF-8 text: byte offset \(offset) (0x\(String(bytes[min(offset, bytes.count - 1)], radix: 16)))"
            + "; paths and values are taken as UTF-8 text (rename a file whose name is not)"
    }
    return nil
}

/// Runs `body` on this rank; any error ends the whole job with its message (MPI_Abort under mpirun):
/// exit status 2 for input errors and outputs that cannot be written, 3 for a model that diverged (`TrainingError`),
/// 1 otherwise. No rank is left waiting in a collective. `body` gets the faults CLADMOP_FAULT injects (tests only;
/// a value of no known form ends the job with exit 2).
func runJob(_ body: (Communicator, FaultPlan) throws -> Void) {
    let comm = makeCommunicator()
    let faults: FaultPlan
    do { faults = try FaultPlan.fromEnvironment() } catch { comm.abort(message: "\(error)", code: 2) }
    Watchdog.injectedStop = faults.stop
    faults.applyLimits()
    do {
        try body(comm, faults)
        if let seconds = faults.linger, comm.isRoot { sleep(seconds) }
        // Ranks leave together: a rank done early (rank 0 alone writes most outputs) stays under the job's watchdog,
        // answering heartbeats, instead of going silent in MPI_Finalize while rank 0's watchdog still judges it.
        comm.barrier()
        Watchdog.endJob()
    } catch let error as InputError {
        comm.abort(message: error.description, code: 2)
    } catch let error as DecodingError {
        comm.abort(message: describeDecodingError(error), code: 2)
    } catch let error as NSError where error.domain == NSCocoaErrorDomain || error.domain == NSPOSIXErrorDomain {
        // A file operation that failed outside the checked paths: the path and the system's reason, not the dump.
        let path = (error.userInfo[NSFilePathErrorKey] as? String) ?? (error.userInfo[NSURLErrorKey] as? URL)?.path ?? "a file"
        comm.abort(message: "\(path): \(describeWriteError(error))", code: 2)
    } catch let error as TrainingError {
        comm.abort(message: error.description, code: error.exitStatus)
    } catch {
        comm.abort(message: "\(error)", code: 1)
    }
}

/// `runJob` for a command that injects no fault of its own (the job-wide ones still apply).
func runJob(_ body: (Communicator) throws -> Void) { runJob { comm, _ in try body(comm) } }

/// JSON text of a typed result, keys sorted.
func jsonText<T: Encodable>(_ value: T) throws -> String {
    String(decoding: try encodeJSON(value), as: UTF8.self)
}

/// Options every subcommand that reads a configuration takes.
struct ConfigOptions: ParsableArguments {
    /// Given more than once, the last applies (the Launch scripts pass their default first and a user's --config after
    /// it), with a warning naming the files not read: configurations are not layered.
    @Option(name: .customLong("config"), help: ArgumentHelp("YAML configuration file (configs/*.yaml); given more than once, the last applies (the others are not read).",
                                                             valueName: "config"))
    var configs: [String] = []

    /// The configuration file read: the last --config.
    var config: String? { configs.last }

    @Option(name: .customLong("set"), help: ArgumentHelp("Override one key: --set section.key=value (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    /// The resolved configuration (defaults < YAML < --set) and its typed, validated specification. Under
    /// mpirun every rank must have resolved the same values, with the same command line and binary
    /// (`requireAgreement`): a difference ends the job naming the keys.
    func resolve(_ comm: Communicator) throws -> (Config, RunSpec) {
        let c = try Config(file: config, overrides: overrides)
        let spec = try RunSpec(c)
        if comm.isRoot, configs.count > 1, let read = configs.last {
            standardErrorWrite(Data(("warning: --config given \(configs.count) times; only the last, \(read), is read (not "
                + configs.dropLast().joined(separator: ", ") + "): files are not layered; --set overrides single keys\n").utf8))
        }
        if comm.isRoot && !c.repeatedOverrides.isEmpty {
            // On stderr: `cladmop config --get` prints values for scripts on stdout.
            standardErrorWrite(Data(("warning: --set \(c.repeatedOverrides.joined(separator: ", ")) given more than once; the last value applies: "
                + c.repeatedOverrides.map { "\($0)=\(c.values[$0]!.description)" }.joined(separator: ", ") + "\n").utf8))
        }
        // From here a rank that stops answering ends the job, also outside training, featurizing and scoring.
        Watchdog.guardJob(StallPolicy(stallTimeout: spec.train.stallTimeout), comm: comm)
        try requireAgreement(ConfigSchema.keys.map { ($0.path, c.values[$0.path]!.description) }
                                 + [("command line", CommandLine.arguments.dropFirst().joined(separator: " ")),
                                    ("executable", executableIdentity())]
                                 // Environment that changes the numbers: ranks with other GEMM libraries or subnormal
                                 // handling would write a store of mixed vectors, or take different steps.
                                 + [("CLADMOP_GEMM_BACKEND", "auto"), ("CLADMOP_DENORMALS", "flush")].map { name, byDefault in
                                     let value = ProcessInfo.processInfo.environment[name] ?? ""
                                     return ("environment variable " + name, value.isEmpty ? byDefault : value)
                                 },
                             comm: comm, what: "configurations")
        return (c, spec)
    }

    /// The typed, validated specification (the only way commands read configuration values).
    func load(_ comm: Communicator) throws -> RunSpec { try resolve(comm).1 }

    /// The specification for scoring a checkpoint (evaluate, predict, embed), which reads only the keys below: the
    /// checkpoint fixes the model, its input space and its training. A --set of any other key is announced as
    /// having no effect (it had been ignored without a word).
    func loadForScoring(_ comm: Communicator) throws -> RunSpec {
        try resolve(comm, reading: ["encoder.", "data.feature_store", "data.icd_hierarchy", "data.skip_bad_rows", "train.stall_timeout"],
                    why: "the checkpoint fixes the model, its inputs and its training (scoring reads encoder.*, data.feature_store, "
                        + "data.icd_hierarchy, data.skip_bad_rows and train.stall_timeout)")
    }

    /// `resolve` for a command that reads only the keys starting with one of `reading`: a --set of any other key is
    /// named, on rank 0, as having no effect, and `why`.
    func resolve(_ comm: Communicator, reading: [String], why: String) throws -> RunSpec {
        let (config, spec) = try resolve(comm)
        let ignored = config.overriddenKeys.filter { key in !reading.contains { key.hasPrefix($0) } }
        if comm.isRoot && !ignored.isEmpty { log("warning: --set \(ignored.joined(separator: ", ")): no effect here; " + why) }
        return spec
    }
}

/// Prints a line on rank 0's stderr-free log (stdout), flushed.
func log(_ line: String) {
    print(line)
    flushStandardOutput()
}

/// A warning for each single-valued option of `command` given more than once (`--run-dir A --run-dir B`): ArgumentParser
/// keeps the last without a word (a probe's predict read only the second --checkpoint, --data and --output), as
/// --config (with its own warning) and --set do. Options that take several values (--config, --set, --eval) are
/// left out; scanning stops at `--`. Printed by one process: outside mpirun, or by its rank 0 (before MPI starts).
func repeatedOptionWarning(_ command: ParsableCommand.Type) -> String? {
    let env = ProcessInfo.processInfo.environment
    guard (env["OMPI_COMM_WORLD_RANK"] ?? env["PMIX_RANK"] ?? "0") == "0" else { return nil }
    struct Dump: Decodable {
        struct Name: Decodable { var kind: String; var name: String }
        struct Argument: Decodable { var kind: String; var isRepeating: Bool; var names: [Name]? }
        struct Command: Decodable { var arguments: [Argument]? }
        var command: Command
    }
    guard let dump = try? JSONDecoder().decode(Dump.self, from: Data(command._dumpHelp().utf8)) else { return nil }
    var single: [String: String] = [:]      // spelling -> the option's first spelling
    for argument in dump.command.arguments ?? [] where argument.kind == "option" && !argument.isRepeating {
        let spellings = (argument.names ?? []).map { ($0.kind == "long" ? "--" : "-") + $0.name }
        for spelling in spellings { single[spelling] = spellings.first }
    }
    var given: [(option: String, values: [String])] = []        // in the order first given
    let arguments = Array(CommandLine.arguments.dropFirst())
    var i = 0
    while i < arguments.count, arguments[i] != "--" {
        let token = arguments[i]
        let parts = token.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let inline = token.hasPrefix("--") && parts.count == 2
        if let option = single[inline ? parts[0] : token] {
            let value = inline ? parts[1] : (i + 1 < arguments.count ? arguments[i + 1] : "")
            if let k = given.firstIndex(where: { $0.option == option }) { given[k].values.append(value) } else { given.append((option, [value])) }
            if !inline { i += 1 }
        }
        i += 1
    }
    // The same value twice changes nothing: not said.
    let lines = given.compactMap { entry -> String? in
        guard let last = entry.values.last, Set(entry.values).count > 1 else { return nil }
        return "warning: \(entry.option) given \(entry.values.count) times; the last applies, \(printable(last)) (not "
            + entry.values.dropLast().map(printable).joined(separator: ", ") + ")\n"
    }
    return lines.isEmpty ? nil : lines.joined()
}
