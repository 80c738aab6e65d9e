import Foundation
import NN
import TestSupport
import Training
import XCTest

/// The command-line surface: help text, config validation (exit 2, key and allowed values named),
/// feature store refusals naming the rebuild command, and the encode output format.
final class CLITests: XCTestCase {
    /// An empty folder for one test, removed after it.
    func scratchFolder(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "cladmop-cli-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// A scratch folder (removed after the test) holding a synthetic store `s.store`, and the `--set` words that make
    /// the smoke pretraining read it: what the tests of a real run's output and resume need, in seconds.
    func syntheticSmokeRun(_ name: String, trials: Int = 400, dim: Int = 16) throws -> (dir: String, settings: [String]) {
        let dir = try scratchFolder(name)
        let hierarchy = repositoryRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv"
        let synth = try runProduct("cladmop", ["synth", "--trials", "\(trials)", "--dim", "\(dim)", "--output", dir + "/s.store", "--seed", "3",
                                               "--set", "data.icd_hierarchy=\(hierarchy)"])
        XCTAssertEqual(synth.status, 0, synth.output)
        return (dir, ["--config", repositoryRoot + "/configs/smoke.yaml", "--set", "data.synthetic=true",
                      "--set", "data.feature_store=\(dir)/s.store", "--set", "data.icd_hierarchy=\(hierarchy)"])
    }

    func cladmop(_ args: [String], env: [String: String] = [:]) throws -> (status: Int32, output: String) {
        try runProduct("cladmop", args, environment: env)
    }

    func testHelpListsEverySubcommand() throws {
        let r = try cladmop(["--help"])
        XCTAssertEqual(r.status, 0)
        for sub in ["featurize", "pretrain", "encode", "synth", "bench", "config"] { XCTAssertTrue(r.output.contains(sub), sub) }
        let p = try cladmop(["pretrain", "--help"])
        XCTAssertTrue(p.output.contains("--run-dir") && p.output.contains("--resume") && p.output.contains("--set"), p.output)
        let h = try cladmop(["help", "finetune"])
        XCTAssertEqual(h.status, 0, h.output)
        XCTAssertTrue(h.output.contains("--pretrained"), h.output)
        // Left by the thirteenth probe: ArgumentParser printed the overview for a name that is no subcommand, exit 0.
        let nosuch = try cladmop(["help", "pretrian"])
        XCTAssertEqual(nosuch.status, 2, nosuch.output)
        XCTAssertTrue(nosuch.output.contains("error: help: no subcommand 'pretrian' (expected one of featurize, pretrain,"), nosuch.output)
        // --version gives the formats the binary writes and reads (the checkpoint's `version` key, the store's header).
        let v = try cladmop(["--version"])
        XCTAssertEqual(v.status, 0, v.output)
        XCTAssertEqual(v.output.trimmingCharacters(in: .whitespacesAndNewlines),
                       "cladmop: checkpoint format \(CheckpointMeta.currentVersion), feature store format 1 (featurizer 1)")
    }

    /// A single-valued option given twice is said (a probe, session 48: predict read only the second --checkpoint,
    /// --data and --output without a word); options that take several values (--get, --set) are not.
    func testASingleValuedOptionGivenTwiceIsSaid() throws {
        let r = try cladmop(["evaluate", "--checkpoint", "/nowhere/a", "--data", "x.csv", "--checkpoint=/nowhere/b"])
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("warning: --checkpoint given 2 times; the last applies, /nowhere/b (not /nowhere/a)"), r.output)
        XCTAssertFalse(r.output.contains("--data given"), r.output)
        let get = try cladmop(["config", "--get", "train.seed", "--get", "train.epochs"])
        XCTAssertEqual(get.status, 0, get.output)
        XCTAssertFalse(get.output.contains("given 2 times"), get.output)
    }

    /// The Launch scripts pass evaluate and predict only the words after `--` that scoring reads (`scoring_args` of
    /// Launch/common.sh): a stranger's probe saw every `Launch/finetune -- --set finetune.X=...` end with evaluate's
    /// warning that the settings had no effect. The shell's list is checked against the binary's: evaluate names none
    /// of the words kept, and names exactly the keys dropped.
    func testScoringArgsKeepWhatScoringReads() throws {
        let words = ["--set", "encoder.max_tokens=64", "--set=data.feature_store=/nowhere/s.store", "--set", "data.icd_hierarchy=/nowhere/t.tsv",
                     "--set", "data.skip_bad_rows=true", "--set", "train.stall_timeout=5", "--set", "finetune.epochs=1",
                     "--set=data.max_sentences=32", "--set", "train.seed=3", "--config", "configs/finetune-phase1.yaml"]
        let script = "source Launch/common.sh && scoring_args \"$@\" | tr '\\0' '\\n'"
        let r = try runCommand("/bin/bash", ["-c", script, "bash"] + words, timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        let kept = r.output.split(separator: "\n").map(String.init)
        XCTAssertEqual(kept, ["--set", "encoder.max_tokens=64", "--set=data.feature_store=/nowhere/s.store", "--set", "data.icd_hierarchy=/nowhere/t.tsv",
                              "--set", "data.skip_bad_rows=true", "--set", "train.stall_timeout=5", "--config", "configs/finetune-phase1.yaml"])
        func warning(_ args: [String]) throws -> String? {
            let e = try cladmop(["evaluate", "--checkpoint", "/nowhere/run", "--data", "data/top/toy_valid.csv"] + args)
            XCTAssertEqual(e.status, 2, e.output)      // no such checkpoint, after the configuration is read
            return e.output.split(separator: "\n").first { $0.contains("no effect here") }.map(String.init)
        }
        XCTAssertNil(try warning(kept))
        let all = try XCTUnwrap(try warning(words))
        XCTAssertTrue(all.hasPrefix("warning: --set finetune.epochs, data.max_sentences, train.seed: no effect here"), all)
    }

    /// SIGTERM to a Launch script (a stranger's probe of the scripts): the script's EXIT trap runs (bash had skipped it
    /// once an earlier run_job had set and reset the signal's trap: Launch/bench left its temporary file), and a job
    /// that is itself a script (Launch/setup, run by Launch/main) is stopped with what it runs in its foreground (a
    /// build had gone on after Launch/main ended).
    func testAnInterruptedLaunchScriptStopsItsJobsChildrenAndRunsItsExitTrap() throws {
        let dir = try scratchFolder("launch-trap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let marker = "97.\(getpid() % 1000)"      // a sleep of this many seconds is the child script's
        try "#!/bin/bash\nsleep \(marker)\necho child-done\n".write(toFile: dir + "/child.sh", atomically: true, encoding: .utf8)
        try """
            #!/bin/bash
            set -euo pipefail
            source "\(repositoryRoot)/Launch/common.sh"
            run_job true
            trap 'rm -f "\(dir)/temporary"' EXIT
            touch "\(dir)/temporary"
            run_job "\(dir)/child.sh"
            """.write(toFile: dir + "/parent.sh", atomically: true, encoding: .utf8)
        for f in ["child.sh", "parent.sh"] { chmod(dir + "/" + f, 0o755) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: dir + "/parent.sh")
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        let started = Date()
        func childRuns() throws -> Bool { try runCommand("/usr/bin/pgrep", ["-f", "sleep \(marker)"], timeout: 10).status == 0 }
        while try !FileManager.default.fileExists(atPath: dir + "/temporary") || !childRuns() {
            guard Date().timeIntervalSince(started) < 30 else { p.terminate(); return XCTFail("the child never started") }
            usleep(100_000)
        }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        XCTAssertEqual(p.terminationStatus, SIGTERM)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/temporary"), "the EXIT trap ran")
        XCTAssertFalse(try childRuns(), "the child script's sleep is stopped")
    }

    func testConfigErrorsNameTheKeyAndExitWith2() throws {
        let cases: [([String], String)] = [
            (["--set", "train.global_bach=64"], "unknown key train.global_bach (keys of train: train.global_batch"),
            (["--set", "train.global_batch=many"], "train.global_batch = many is invalid (expected an integer in [2, 1000000])"),
            (["--set", "optimizer.name=lion"], "optimizer.name = lion is invalid (expected one of adam, adamw, sgd)"),
            (["--set", "optimizer.lr=-1"], "optimizer.lr = -1"),
            (["--set", "loss.normalize=maybe"], "expected true or false"),
            (["--set", "modle.dim=3"], "unknown key modle.dim"),
            (["--set", "novalue"], "expected key.path=value"),
        ]
        for (args, expected) in cases {
            let r = try cladmop(["config"] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains(expected), "\(args): expected '\(expected)' in \(r.output)")
        }
        let dir = NSTemporaryDirectory() + "cladmop-cli-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let yaml = dir + "/bad.yaml"
        try "train:\n  global_batch: 64\n  warmup: 3\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let r = try cladmop(["config", "--config", yaml])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.output.contains("\(yaml): key train.warmup: unknown key train.warmup"), r.output)
        try "train: [1, 2".write(toFile: yaml, atomically: true, encoding: .utf8)
        XCTAssertTrue(try cladmop(["config", "--config", yaml]).output.contains("\(yaml): not valid YAML"))
        // Resolved config round-trips.
        let ok = try cladmop(["config", "--config", repositoryRoot + "/configs/paper.yaml", "--set", "train.global_batch=256"])
        XCTAssertEqual(ok.status, 0)
        XCTAssertTrue(ok.output.contains("  global_batch: 256"), ok.output)
        // --get repeated: one value per line, in order (it had kept only the last); --markdown takes no other option.
        let two = try cladmop(["config", "--config", repositoryRoot + "/configs/paper.yaml", "--set", "train.global_batch=256",
                               "--get", "train.global_batch", "--get", "optimizer.name"])
        XCTAssertEqual(two.status, 0, two.output)
        XCTAssertEqual(two.output.split(separator: "\n").map(String.init), ["256", "adam"], two.output)
        let both = try cladmop(["config", "--markdown", "--get", "train.global_batch"])
        XCTAssertEqual(both.status, 2, both.output)
        XCTAssertTrue(both.output.contains("--markdown prints the reference of every key"), both.output)
        // A relation broken in the file alone is reported against the file, "(with --set)" only when --set was given.
        try "model:\n  dim: 10\n  heads: 3\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let plain = try cladmop(["config", "--config", yaml])
        XCTAssertEqual(plain.status, 2, plain.output)
        XCTAssertTrue(plain.output.contains(yaml) && plain.output.contains("model.heads") && !plain.output.contains("(with --set)"), plain.output)
        let withSet = try cladmop(["config", "--config", yaml, "--set", "train.global_batch=64"])
        XCTAssertTrue(withSet.output.contains("\(yaml) (with --set)"), withSet.output)
    }

    /// Standard streams that cannot be written (a stranger's probe): a printed result lost to a full disk
    /// (`config --get X > /dev/full`) had exited 0; a message to a full or closed stderr (`2>/dev/full`) had trapped
    /// (signal 4) in FileHandle.standardError.write. Now exit 2 naming the standard output, and exit 2 with the message
    /// lost; a closed stdout is /dev/null (exit 0).
    func testStandardStreamsThatCannotBeWritten() throws {
        let smoke = repositoryRoot + "/configs/smoke.yaml"
        func shell(_ line: String) throws -> (status: Int32, reason: Process.TerminationReason, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", line, productsFolder.appendingPathComponent("cladmop").path, smoke]
            let errors = Pipe()
            p.standardError = errors
            try p.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return (p.terminationStatus, p.terminationReason, text)
        }
        let full = try shell("\"$0\" config --config \"$1\" --get train.epochs > /dev/full")
        XCTAssertEqual(full.status, 2, full.stderr)
        XCTAssertTrue(full.stderr.contains("the standard output could not be written: No space left on device"), full.stderr)
        // Help too (ArgumentParser's exit(withError:) had printed it and exited 0 whatever became of it).
        for help in ["--help", "pretrain --help", "help evaluate"] {
            let r = try shell("\"$0\" \(help) > /dev/full")
            XCTAssertEqual(r.status, 2, "\(help): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("the standard output could not be written"), r.stderr)
        }
        for redirect in ["2>/dev/full", "2>&-"] {
            let r = try shell("\"$0\" config --config /no/such/config.yaml \(redirect)")
            XCTAssertEqual(r.reason, .exit, "\(redirect): ended by a signal")
            XCTAssertEqual(r.status, 2, redirect)
        }
        let closed = try shell("\"$0\" config --config \"$1\" --get train.epochs >&-")
        XCTAssertEqual(closed.status, 0, closed.stderr)
    }

    /// A reader of the standard output that goes away (`| head -1`, `| true`) is no error (docs/reliability.md): a
    /// stranger's probe found the default SIGPIPE ending pretrain part way (exit 141: a run folder of config.yaml and an
    /// empty metrics.jsonl, refused by the next run without --resume) and evaluate before its --json was written.
    func testAReaderOfTheStandardOutputThatWentAwayIsNoError() throws {
        let (dir, settings) = try syntheticSmokeRun("epipe")
        // The status of cladmop itself, on stderr: the pipe's reader (`true`) has ended before the first line is printed.
        let line = "{ \"$0\" \"$@\"; echo \"cladmop-status=$?\" >&2; } | true"
        let r = try runCommand("/bin/bash", ["-c", line, productsFolder.appendingPathComponent("cladmop").path, "pretrain", "--run-dir", dir + "/run"]
                                             + settings + ["--set", "train.max_steps=30", "--set", "train.log_every=1"])
        XCTAssertTrue(r.output.contains("cladmop-status=0"), r.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/checkpoints/best.json"), "the run was not finished: \(r.output)")
        let log = (try? String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("\"type\":\"summary\""), "no summary record: \(log.suffix(300))")
    }

    /// A job's memory is capped by its control group (Slurm, Docker, systemd), not only by the machine's memory: the
    /// check had compared the estimate with the physical memory alone, so a model that fits the machine but not the
    /// job's share started and met the OOM killer. A 256 MiB group (v1's memory hierarchy, or v2's) holds the command;
    /// a 110 M-parameter model (1.7 GiB, well within this machine) is refused naming the group, and writes nothing.
    func testTheMemoryCheckHonoursTheControlGroupsLimit() throws {
        let (dir, settings) = try syntheticSmokeRun("cgroup")
        let v1 = "/sys/fs/cgroup/memory", name = "cladmop-test-\(getpid())"
        let (group, limitFile) = FileManager.default.fileExists(atPath: v1 + "/memory.limit_in_bytes")
            ? (v1 + "/" + name, "memory.limit_in_bytes") : ("/sys/fs/cgroup/" + name, "memory.max")
        guard mkdir(group, 0o755) == 0 else { throw XCTSkip("cannot make a control group \(group): \(String(cString: strerror(errno)))") }
        addTeardownBlock { _ = rmdir(group) }
        guard (try? "268435456".write(toFile: group + "/" + limitFile, atomically: false, encoding: .utf8)) != nil else {
            throw XCTSkip("cannot set \(group)/\(limitFile) (no memory controller in this control group)")
        }
        let binary = productsFolder.appendingPathComponent("cladmop").path
        let r = try runCommand("/bin/sh", ["-c", "echo $$ 2>/dev/null > \"$0\" || exit 77; exec \"$@\"", group + "/cgroup.procs", binary,
                                           "pretrain", "--run-dir", dir + "/run"] + settings + ["--set", "model.dim=768", "--set", "model.heads=12"])
        if r.status == 77 { throw XCTSkip("cannot move a process into \(group) (a delegation rule of this host's control groups)") }
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("this model needs about 1.7 GiB per rank"), r.output)
        XCTAssertTrue(r.output.contains("/\(name) (\(limitFile)) allows 205 MiB per rank (80 % of 256 MiB over 1 rank(s) on this node)"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"))
    }

    /// A resumed stretch killed after its summary and before its report (a crash-consistency review): the next
    /// `--resume auto` found the run ended and kept the earlier stretch's report.md for good. Now written again when it
    /// is not the report of the step the run ended at; an up-to-date one is left as it is (no file written).
    func testAnEndedRunsReportOfAnEarlierStretchIsWrittenAgain() throws {
        let (dir, settings) = try syntheticSmokeRun("report")
        func pretrain(_ steps: Int) throws -> (status: Int32, output: String) {
            let r = try runProduct("cladmop", ["pretrain", "--run-dir", dir + "/run", "--resume", "auto"] + settings + ["--set", "train.max_steps=\(steps)"])
            return (r.status, r.output)
        }
        let first = try pretrain(6)
        XCTAssertEqual(first.status, 0, first.output)
        let earlier = try String(contentsOfFile: dir + "/run/report.md", encoding: .utf8)
        XCTAssertTrue(earlier.contains(" 6 steps.\n"), earlier)
        let second = try pretrain(12)
        XCTAssertEqual(second.status, 0, second.output)
        // As if killed after the second stretch's summary, before its report.md was renamed into place.
        try earlier.write(toFile: dir + "/run/report.md", atomically: true, encoding: .utf8)
        let again = try pretrain(12)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("report.md was an earlier stretch's"), again.output)
        let report = try String(contentsOfFile: dir + "/run/report.md", encoding: .utf8)
        XCTAssertTrue(report.contains(" 12 steps.\n"), report)
        // Up to date: left as it is.
        let inode = try FileManager.default.attributesOfItem(atPath: dir + "/run/report.md")[.systemFileNumber] as? Int
        let once = try pretrain(12)
        XCTAssertEqual(once.status, 0, once.output)
        XCTAssertFalse(once.output.contains("earlier stretch"), once.output)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: dir + "/run/report.md")[.systemFileNumber] as? Int, inode)
    }

    /// A metrics.jsonl append that fails (here a file size limit of 8 KiB: EFBIG, as a full disk's ENOSPC) ends the
    /// run with exit 2 naming the log, and cuts the log back to its last whole record (a stranger's probe had found a
    /// torn last line, left until a resume dropped it).
    func testFailedMetricsAppendLeavesWholeRecords() throws {
        let (dir, settings) = try syntheticSmokeRun("fsize", trials: 3000, dim: 24)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", "ulimit -f 8; exec \"$0\" \"$@\"", productsFolder.appendingPathComponent("cladmop").path, "pretrain", "--run-dir", dir + "/run"]
            + settings + ["--set", "train.max_steps=400", "--set", "checkpoint.every_steps=100000", "--set", "train.log_every=1"]
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_NUM_THREADS"] = "1"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, text)
        XCTAssertEqual(p.terminationStatus, 2, text)
        XCTAssertTrue(text.contains("metrics.jsonl: cannot append a record"), text)
        let log = try Data(contentsOf: URL(fileURLWithPath: dir + "/run/metrics.jsonl"))
        XCTAssertGreaterThan(log.count, 4096, "the limit was reached by the log")
        XCTAssertEqual(log.last, 0x0A, "the log ends with a whole record")
        for line in log.split(separator: 0x0A) {
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line)), String(decoding: line, as: UTF8.self))
        }
    }

    func testDocsListEveryConfigKey() throws {
        let md = try cladmop(["config", "--markdown"]).output
        let doc = try String(contentsOfFile: repositoryRoot + "/docs/configuration.md", encoding: .utf8)
        XCTAssertTrue(doc.contains(md), "docs/configuration.md is out of date: regenerate its table with `cladmop config --markdown`")
    }

    func testGlobalBatchSmallerThanWorldSizeIsAnError() throws {
        let dir = NSTemporaryDirectory() + "cladmop-cli-ws-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = dir + "/s.store"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let hierarchy = "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"
        XCTAssertEqual(try cladmop(["synth", "--trials", "40", "--dim", "8", "--output", store, "--set", hierarchy]).status, 0)
        let r = try mpirun(np: 3, executable: productsFolder.appendingPathComponent("cladmop").path,
                           arguments: ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir + "/run",
                                       "--set", "data.synthetic=true", "--set", "data.feature_store=\(store)", "--set", hierarchy,
                                       "--set", "train.global_batch=2"])
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("train.global_batch = 2 is smaller than the world size 3"), r.output)
    }

    /// A run folder that another command is writing (rank 0 holds a lock on it from the moment it writes there) is
    /// refused, even when it holds no run yet: two runs started into one new folder would mix their files. The test
    /// holds the lock itself; without it the same command trains (positive control).
    func testARunFolderInUseByAnotherCommandIsRefused() throws {
        let dir = NSTemporaryDirectory() + "cladmop-cli-lock-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = dir + "/s.store"
        let hierarchy = "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"
        XCTAssertEqual(try cladmop(["synth", "--trials", "40", "--dim", "8", "--output", store, "--set", hierarchy]).status, 0)
        let pretrain = ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir + "/run",
                        "--set", "data.synthetic=true", "--set", "data.feature_store=\(store)", "--set", hierarchy, "--set", "train.max_steps=1"]
        let fd = open(dir + "/run", O_RDONLY | O_DIRECTORY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        let r = try cladmop(pretrain)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("\(dir)/run: another cladmop command is writing a run in this folder"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/config.yaml"))
        close(fd)
        let ok = try cladmop(pretrain)
        XCTAssertEqual(ok.status, 0, ok.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/config.yaml"))
        // --resume auto writes nothing before it holds the lock, not even the repair of a missing best.json (it had
        // been written by a second command on a run still training); with the lock free it restores it.
        let best = dir + "/run/checkpoints/best.json"
        let pointer = try Data(contentsOf: URL(fileURLWithPath: best))
        try FileManager.default.removeItem(atPath: best)
        let again = open(dir + "/run", O_RDONLY | O_DIRECTORY)
        XCTAssertEqual(flock(again, LOCK_EX | LOCK_NB), 0)
        let busy = try cladmop(pretrain + ["--resume", "auto"])
        XCTAssertEqual(busy.status, 2, busy.output)
        XCTAssertTrue(busy.output.contains("another cladmop command is writing a run in this folder"), busy.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: best), "nothing written before the lock")
        close(again)
        let mended = try cladmop(pretrain + ["--resume", "auto"])
        XCTAssertEqual(mended.status, 0, mended.output)
        XCTAssertTrue(mended.output.contains("resume: checkpoints/best.json was missing") && mended.output.contains("the run already ended"), mended.output)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: best)), pointer)
        // --resume auto into a folder that does not exist yet starts afresh (as Slurm's requeue and the supervisor
        // rely on): the lock is taken when the folder is made.
        var fresh = pretrain + ["--resume", "auto"]
        fresh[fresh.firstIndex(of: dir + "/run")!] = dir + "/fresh"
        let started = try cladmop(fresh)
        XCTAssertEqual(started.status, 0, started.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/fresh/checkpoints/best.json"), started.output)
    }

    /// encode reads its lines as every text input does: LF, CR LF and a lone CR each end a text.
    func testEncodeEndsLinesAtCRLFAndCR() throws {
        let model = repositoryRoot + "/models/all-MiniLM-L6-v2"
        guard FileManager.default.fileExists(atPath: model + "/model.safetensors") else { XCTFail("\(model) is missing: run Launch/setup"); return }
        let dir = try scratchFolder("encode")
        try Data("asthma\r\nlung cancer\rheart failure\n".utf8).write(to: URL(fileURLWithPath: dir + "/in.txt"))
        let r = try cladmop(["encode", "--input", dir + "/in.txt", "--output", dir + "/out.jsonl", "--model-dir", model])
        XCTAssertEqual(r.status, 0, r.output)
        let texts = try String(contentsOfFile: dir + "/out.jsonl", encoding: .utf8).split(separator: "\n").map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["text"] as? String
        }
        XCTAssertEqual(texts, ["asthma", "lung cancer", "heart failure"])
    }

    /// SPEC 3.2: every subcommand of its table takes --config and --set; encode had only its own flags. It reads the
    /// encoder section as featurize does (model_dir, max_tokens, precision), and its flags win over the configuration.
    func testEncodeReadsTheEncoderSectionOfItsConfiguration() throws {
        let model = repositoryRoot + "/models/all-MiniLM-L6-v2"
        guard FileManager.default.fileExists(atPath: model + "/model.safetensors") else { XCTFail("\(model) is missing: run Launch/setup"); return }
        let dir = try scratchFolder("encode-config")
        try Data("inclusion criteria: adults aged 18 to 75 years with type 2 diabetes mellitus\nasthma\n".utf8)
            .write(to: URL(fileURLWithPath: dir + "/in.txt"))
        try "encoder:\n  model_dir: \(model)\n  max_tokens: 8\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        func encode(_ name: String, _ args: [String]) throws -> (status: Int32, output: String, lines: String) {
            let r = try cladmop(["encode", "--input", dir + "/in.txt", "--output", dir + "/" + name] + args)
            return (r.status, r.output, (try? String(contentsOfFile: dir + "/" + name, encoding: .utf8)) ?? "")
        }
        let byFlags = try encode("flags.jsonl", ["--model-dir", model, "--max-tokens", "8"])
        XCTAssertEqual(byFlags.status, 0, byFlags.output)
        XCTAssertTrue(byFlags.output.contains("1 of the 2 lines of \(dir)/in.txt are longer than --max-tokens 8"), byFlags.output)
        let byConfig = try encode("config.jsonl", ["--config", dir + "/c.yaml"])
        XCTAssertEqual(byConfig.status, 0, byConfig.output)
        XCTAssertTrue(byConfig.output.contains("are longer than encoder.max_tokens 8"), byConfig.output)
        XCTAssertEqual(byConfig.lines, byFlags.lines)
        let bySet = try encode("set.jsonl", ["--set", "encoder.model_dir=\(model)", "--set", "encoder.max_tokens=8", "--set", "encoder.batch_tokens=128"])
        XCTAssertEqual(bySet.lines, byFlags.lines, bySet.output)
        XCTAssertTrue(bySet.output.contains("warning: --set encoder.batch_tokens: no effect here; encode reads encoder.model_dir,"), bySet.output)
        XCTAssertFalse(byConfig.output.contains("no effect here"), byConfig.output)
        // A flag wins over the configuration: the full length, no text cut, other vectors.
        let flagWins = try encode("wins.jsonl", ["--config", dir + "/c.yaml", "--max-tokens", "256"])
        XCTAssertEqual(flagWins.status, 0, flagWins.output)
        XCTAssertFalse(flagWins.output.contains("longer than"), flagWins.output)
        XCTAssertNotEqual(flagWins.lines, byFlags.lines)
        // Its keys are checked as every command's.
        let bad = try encode("bad.jsonl", ["--set", "encoder.max_tokens=4"])
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("encoder.max_tokens"), bad.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.jsonl"))
    }

    /// SPEC 4.1, "nothing is silently dropped": a code the ICD-10 tree does not hold is read as its longest known
    /// prefix (a finer or newer code than the tree's keeps its ancestors), and featurize now says so, with the first
    /// few codes, their prefixes and the first row (it had said nothing; a code with no known prefix is an error).
    func testCodesReadAsTheirPrefixAreNamed() throws {
        let dir = try scratchFolder("icd-prefix")
        let good = try String(contentsOfFile: repositoryRoot + "/Tests/BadInput/common/good.csv", encoding: .utf8)
        XCTAssertTrue(good.contains("['E11.9']"))
        try good.replacingOccurrences(of: "['E11.9']", with: "['E11.9ZZ', 'J45.909']").write(toFile: dir + "/t.csv", atomically: true, encoding: .utf8)
        let r = try cladmop(["featurize", "--data", dir + "/t.csv", "--output", dir + "/t.store", "--set", "encoder.max_tokens=8",
                             "--set", "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("featurize: 1 distinct ICD-10 code(s) are not in icd10cm_2025_hierarchy.tsv and are read as their "
                                        + "longest known prefix: E11.9ZZ -> E11.9 (the first at \(dir)/t.csv:7)"), r.output)
        let plain = try cladmop(["featurize", "--data", repositoryRoot + "/Tests/BadInput/common/good.csv", "--output", dir + "/g.store",
                                 "--set", "encoder.max_tokens=8", "--set", "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"])
        XCTAssertEqual(plain.status, 0, plain.output)
        XCTAssertFalse(plain.output.contains("longest known prefix"), plain.output)
    }

    func testCorruptStaleAndMissingStoresAreRefusedWithTheRebuildCommand() throws {
        let dir = NSTemporaryDirectory() + "cladmop-cli-store-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = dir + "/s.store"
        let hierarchy = "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"
        XCTAssertEqual(try cladmop(["synth", "--trials", "40", "--dim", "8", "--output", store, "--set", hierarchy]).status, 0)
        func pretrain(_ s: String, synthetic: Bool = true) throws -> (status: Int32, output: String) {
            try cladmop(["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir + "/run", "--overwrite",
                         "--set", "data.synthetic=\(synthetic)", "--set", "data.feature_store=\(s)", "--set", hierarchy])
        }
        XCTAssertEqual(try pretrain(store).status, 0)
        // Flip one payload byte: checksum mismatch.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: store))
        bytes[bytes.count - 5] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: dir + "/corrupt.store"))
        var r = try pretrain(dir + "/corrupt.store")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.output.contains("corrupt feature store (checksum mismatch); rebuild it with: cladmop synth --output \(dir)/corrupt.store"), r.output)
        // Truncated.
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: dir + "/short.store"))
        r = try pretrain(dir + "/short.store")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.output.contains("truncated or corrupt feature store"), r.output)
        // Missing.
        r = try pretrain(dir + "/none.store")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.output.contains("feature store not found; rebuild it with: cladmop synth --output"), r.output)
        // A store of CSV files names featurize with the configured files.
        r = try pretrain(dir + "/none.store", synthetic: false)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.output.contains("feature store not found; rebuild it with: cladmop featurize --data"), r.output)
        // Synthetic store used as a CSV store: stale (its sources are not the configured files).
        r = try pretrain(store, synthetic: false)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.output.contains("stale feature store"), r.output)
    }
}

/// Hostfiles are checked before mpirun sees them: every malformed one is refused with its line and exit 2.
final class HostfileTests: XCTestCase {
    func testMalformedHostfilesAreRefusedWithTheLine() throws {
        let dir = NSTemporaryDirectory() + "cladmop-hostfile-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/hosts"
        let cases: [(text: String, ranks: Int, expected: String)] = [
            ("", 1, "hostfile lists no host"),
            ("# only a comment\n\n", 1, "hostfile lists no host"),
            ("node01 slots=0\n", 1, ":1: slots=0 for host node01: expected a whole number >= 1"),
            ("node01 slots=four\n", 1, ":1: slots=four for host node01: expected a whole number >= 1"),
            ("node01\nnode02 cpus=4\n", 1, ":2: \"cpus=4\" after host node02: expected slots=N or max_slots=N"),
            ("node01 slots=2\nnode01 slots=2\n", 1, ":2: host node01 is already listed on line 1"),
            ("node01 slots=4 max_slots=2\n", 1, ":1: max_slots=2 is below slots=4 for host node01"),
            ("node01 slots=4 max-slots=2\n", 1, ":1: max-slots=2 is below slots=4 for host node01"),
            ("node01 max_slots=4 max-slots=4\n", 1, ":1: max-slots given twice for host node01"),
            ("node01 slots=2 slots=3\n", 1, ":1: slots given twice for host node01"),
            ("node 01=x slots=2\n", 1, "\"01=x\" after host node"),
            ("no/de slots=2\n", 1, ":1: \"no/de\" is not a host name"),
            ("node01 slots=2 # two cores\nnode02 slots=2\n", 5, "-np 5 needs more slots than the 4 this hostfile gives"),
        ]
        for c in cases {
            try c.text.write(toFile: file, atomically: true, encoding: .utf8)
            let r = try runProduct("cladmop", ["check-hostfile", file, "-np", "\(c.ranks)"])
            XCTAssertEqual(r.status, 2, "\(c.text): \(r.output)")
            XCTAssertTrue(r.output.contains(file) && r.output.contains(c.expected), "expected '\(c.expected)' in \(r.output)")
        }
        let missing = try runProduct("cladmop", ["check-hostfile", dir + "/none"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.output.contains("cannot read the hostfile"), missing.output)
        let ok = try runProduct("cladmop", ["check-hostfile", repositoryRoot + "/hostfiles/localhost", "-np", "2"])
        XCTAssertEqual(ok.status, 0, ok.output)
        // The launcher refuses a bad hostfile before starting mpirun.
        try "node01 slots=x\n".write(toFile: file, atomically: true, encoding: .utf8)
        let launch = try runCommand(repositoryRoot + "/Launch/pretrain", ["-np", "2", "--hostfile", file, "--", "--run-dir", dir + "/run"],
                                    environment: try pathWithoutSwiftBuild(in: dir + "/bin"))
        XCTAssertEqual(launch.status, 2, launch.output)
        XCTAssertTrue(launch.output.contains("\(file):1: slots=x"), launch.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"), "nothing may be written for a refused launch")
    }

    /// The Launch scripts refuse bad arguments with exit 2 and the option named, before featurizing, pretraining or
    /// writing anything (Launch/devtest used to check --phases per phase, after minutes of pretraining; an option
    /// without a value ended with bash's "unbound variable", status 1; --max-restarts abc restarted forever).
    func testLaunchScriptsRefuseBadArgumentsBeforeAnyWork() throws {
        let dir = NSTemporaryDirectory() + "cladmop-launch-args-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Odd paths, outside dir (where nothing may be written): a FIFO, a link to nothing, a file.
        let odd = dir + "-odd"
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: odd) }
        XCTAssertEqual(mkfifo(odd + "/fifo", 0o644), 0)
        try FileManager.default.createSymbolicLink(atPath: odd + "/dangling", withDestinationPath: odd + "/nothing")
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: odd + "/file"))
        // A folder of inputs (as data/ or configs/: the old Launch/ablations --out moved it aside), and a Launch/paper run
        // whose phase I fine-tuning was interrupted (its members, no report.md).
        try FileManager.default.createDirectory(atPath: odd + "/inputs", withIntermediateDirectories: true)
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: odd + "/inputs/phase_I_train.csv"))
        // Another project's config.yaml is no cladmop run (only the one cladmop writes counts).
        try FileManager.default.createDirectory(atPath: odd + "/project", withIntermediateDirectories: true)
        try Data("name: another project\n".utf8).write(to: URL(fileURLWithPath: odd + "/project/config.yaml"))
        // The hostfile of an emulated cluster that is down (its launch agent gone).
        try Data("# cladmop-cluster agent=\(odd)/gone/agent subnet=10.213.0.0/24\ngone-n0 slots=1\ngone-n1 slots=1\n".utf8)
            .write(to: URL(fileURLWithPath: odd + "/stale.hosts"))
        try FileManager.default.createDirectory(atPath: odd + "/paper/finetune-phase1/members", withIntermediateDirectories: true)
        // A fine-tuning run that was interrupted (a run's config.yaml, its log of finetune records) with a checkpoints/.
        try FileManager.default.createDirectory(atPath: odd + "/ftrun/checkpoints", withIntermediateDirectories: true)
        try Data("# resolved cladmop configuration\nfinetune: {}\n".utf8).write(to: URL(fileURLWithPath: odd + "/ftrun/config.yaml"))
        try Data("{\"type\":\"finetune\",\"epoch\":1}\n".utf8).write(to: URL(fileURLWithPath: odd + "/ftrun/metrics.jsonl"))
        try Data("# resolved cladmop configuration\nfinetune: {}\n".utf8).write(to: URL(fileURLWithPath: odd + "/paper/finetune-phase1/config.yaml"))
        // The scripts' rank cap on this machine: 8 per core as nproc counts them (Launch/common.sh rank_cap).
        let cores = try runCommand("/usr/bin/env", ["OMP_NUM_THREADS=", "OMP_THREAD_LIMIT=", "nproc"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let rankCap = 8 * (Int(cores) ?? 0)
        let cases: [(String, [String], String)] = [
            ("devtest", ["--phases", "1,2", "--run-dir", dir + "/d"], "--phases \"1,2\": expected phases 1, 2 and/or 3"),
            ("devtest", ["--phases", "1 5", "--run-dir", dir + "/d"], "5 is not a phase"),
            ("devtest", ["--phases", "1 1", "--run-dir", dir + "/d"], "phase 1 is listed twice"),
            ("devtest", ["--phases", " ", "--run-dir", dir + "/d"], "expected phases 1, 2 and/or 3"),
            ("devtest", ["--phase1-select", "latest", "--run-dir", dir + "/d"], "--phase1-select latest: expected valid or temporal"),
            ("devtest", ["-np", "0", "--run-dir", dir + "/d"], "-np 0: expected a positive integer"),
            ("devtest", ["--run-dir"], "--run-dir needs a value"),
            // A --run-dir that is a file (a script review: devtest had written its splits, then failed in mkdir, exit 1).
            ("devtest", ["--run-dir", odd + "/file"], "--run-dir \(odd)/file: \(odd)/file is a file, not a folder"),
            ("finetune", ["--pretrained", "none", "--run-dir", odd + "/file"], "--run-dir \(odd)/file: \(odd)/file is a file, not a folder"),
            ("paper", ["--phases", "4", "--run-dir", dir + "/p"], "4 is not a phase"),
            ("pretrain", ["--max-restarts", "abc", "--", "--run-dir", dir + "/r"], "--max-restarts abc: expected an integer"),
            ("pretrain", ["-np", "abc", "--", "--run-dir", dir + "/r"], "-np abc: expected a positive integer"),
            ("finetune", ["--phase"], "--phase needs a value"),
            ("finetune", ["--phase", "1", "--pretrained", dir + "/none", "--run-dir", dir + "/f"], "--pretrained \(dir)/none: no such checkpoint"),
            ("finetune", ["--phase", "1", "--pretrained", "none", "--run-dir", dir + "/f", "--", "--set", "finetune.folds=0",
                          "--set", "finetune.select_latest=0.004"], "finetune.select_latest = 0.004: expected a whole percent"),
            ("main", ["-np", "-1", "--run-dir", dir + "/m"], "-np -1: expected a positive integer"),
            ("bench", ["kernel"], "\"kernel\": not a benchmark"),
            ("bench", ["-np", "0"], "-np 0: expected a positive integer"),
            ("sweep-batch", ["--config"], "--config needs a value"),
            ("ablations", ["-np", "x"], "-np x: expected a positive integer"),
            ("ablations", ["--pretrained", dir + "/none", "--phase", "4", "--out", dir + "/a"], "--phase 4: expected 1, 2 or 3"),
            ("devtest", ["--phases", "*", "--run-dir", dir + "/d"], "--phases \"*\": expected phases 1, 2 and/or 3"),
            ("devtest", ["--phases", "1\n4", "--run-dir", dir + "/d"], "expected phases 1, 2 and/or 3"),
            ("bench", ["train", "-np", "100"], "-np 100: configs/bench.yaml's global batch 128 gives 1 trial(s) per rank"),
            // The hint had named the batch's limit (64) past the machine's cap, which then refused it.
            ("bench", ["train", "-np", "999"], " ranks (2 trials per rank; at most \(rankCap) on this machine's cores)"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--base-batch", "0", "--out", dir + "/s"], "--base-batch 0: expected a positive integer"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "1,8", "--out", dir + "/s"], "1 is below 2"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "2,6", "-np", "3", "--out", dir + "/s"], "2 is smaller than the 3 ranks"),
            // A stranger's probe (session 16): each had run (or set up) before failing, or failed with status 1.
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--chunk-size", "abc", "--out", dir + "/s"], "train.chunk_size"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", "README.md"], "--out README.md is a file"),
            // A fifth probe (session 22): a second -- had reached every pretrain command, which all failed.
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", dir + "/s", "--", "--set", "a=b", "--", "--set", "c=d"], "a second --"),
            ("ablations", ["--pretrained", dir + "/none", "--out", dir + "/a"], "no such run folder or checkpoint"),
            ("ablations", ["--pretrained", "configs", "--out", "README.md"], "--out README.md is a file"),
            ("devtest", ["--run-dir", dir + "/d", "--", "--overwrite"], "--overwrite after --"),
            ("batch-studies", ["bogus"], "Launch/batch-studies: bogus: unknown study; expected sct or synthetic first"),
            ("batch-studies", [], "no study named; expected sct or synthetic first"),
            // An eleventh probe (session 28): bash arithmetic read 010 as 8 nodes, 08 failed after printing its error.
            ("cluster", ["up", "010"], "up N: N must be a whole number from 1 to 64, got '010'"),
            // A seventh probe (session 24): a wrong pretrain option failed every point after the earlier sweep was set
            // aside; the next option taken as --hostfile's value; a missing --pretrained found after the splits.
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", dir + "/s", "--", "--data", "foo.csv"], "--data after --: only --set"),
            ("pretrain", ["--hostfile", "--", "--run-dir", dir + "/r"], "--hostfile needs a value, got the option '--'"),
            ("pretrain", ["--hostfile", "-np", "2", "--", "--run-dir", dir + "/r"], "--hostfile needs a value, got the option '-np'"),
            // A fourteenth probe (session 30): setup (installs, a release build) ran before these were refused; a run folder
            // holding a run was refused only after the phase's splits were written.
            ("batch-studies", ["sct", "--bogus"], "unknown argument --bogus"),
            ("batch-studies", ["sct", "-np", "0"], "-np 0: expected a positive integer"),
            ("paper", ["--hostfile", dir + "/none.hosts", "--run-dir", dir + "/p"], "cannot read the hostfile"),
            ("finetune", ["--phase", "2", "--pretrained", "none", "--run-dir", repositoryRoot + "/Tests/Fixtures/torch_loader/run", "--overwrite"],
             "holds a pretraining run; fine-tune into another folder"),
            ("finetune", ["--phase", "2", "--pretrained", "none", "--run-dir", repositoryRoot + "/Tests/Fixtures/torch_loader/run/checkpoints"],
             "already holds a run (its best.json); give --resume to continue it, --overwrite to replace it"),
            ("devtest", ["--run-dir", dir + "/d", "--", "--set", "finetune.bogus=1"], "unknown key finetune.bogus"),
            ("devtest", ["--run-dir", dir + "/d", "--pretrain-args", "--set train.bogus=1"], "unknown key train.bogus"),
            // A probe of the scripts (session 35): a FIFO hostfile or --pretrained hung (grep, python read it); a --out
            // that is a link to nothing or under a file failed in mkdir with status 1; paper found a file as --run-dir
            // after setup and featurizing; batch-studies ran setup and featurize after `sct --help` or `sct --check`.
            ("pretrain", ["-np", "2", "--hostfile", odd + "/fifo", "--", "--run-dir", dir + "/r"], "is a FIFO; expected the hostfile"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--hostfile", odd + "/fifo", "--out", dir + "/s", "--check"], "is a FIFO"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", odd + "/dangling", "--check"], "which does not exist"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", odd + "/file/sub"], "\(odd)/file is a file on its way"),
            ("ablations", ["--pretrained", "configs", "--out", odd + "/dangling"], "is a symbolic link to \(odd)/nothing, which does not exist"),
            ("paper", ["--run-dir", odd + "/file", "--phases", "1"], "--run-dir \(odd)/file: \(odd)/file is a file, not a folder"),
            ("devtest", ["--pretrained", odd + "/fifo", "--run-dir", dir + "/d"], "is neither a folder nor a regular file"),
            ("batch-studies", ["sct", "--check"], "--check: not an option of a study"),
            // A probe of the scripts (session 41): Launch/main and Launch/ablations had moved aside whatever was at
            // --run-dir / --out (an input CSV, data/, the repository itself), and failed after; Launch/pretrain's options
            // after cladmop's were refused by every rank, without the fix; an interrupted Launch/paper phase was refused
            // after setup and featurizing, advising an option the script does not take.
            // A probe of the emulated cluster (session 42): a hostfile of a cluster that is down reached mpirun, whose
            // status 243 the restart loop restarted.
            ("pretrain", ["-np", "2", "--hostfile", odd + "/stale.hosts", "--max-restarts", "2", "--", "--run-dir", dir + "/r"],
             "is an emulated cluster's (Launch/cluster), which is not up: its launch agent \(odd)/gone/agent is missing"),
            ("main", ["--run-dir", odd + "/file"], "--run-dir \(odd)/file: \(odd)/file is a file, not a folder"),
            ("main", ["--run-dir", repositoryRoot + "/data"], "--run-dir \(repositoryRoot)/data is in the repository's data/ folder"),
            ("main", ["--run-dir", odd + "/project/"], "--run-dir \(odd)/project holds no earlier result of this script (none of: config.yaml"),
            ("main", ["--run-dir", repositoryRoot], "is the repository or a folder above it"),
            ("main", ["--run-dir", "/"], "is the repository or a folder above it"),
            ("ablations", ["--pretrained", "configs", "--out", odd + "/inputs"], "holds no earlier result of this script (none of: ablations.md"),
            // A probe of the scripts (session 45): Launch/pretrain and Launch/finetune wrote runs into data/top and the
            // repository root, exit 0; a quoted MPI_FLAGS value reached mpirun as an executable.
            ("pretrain", ["-np", "2", "--", "--run-dir", "data/top"], "--run-dir data/top is in the repository's data/ folder"),
            ("pretrain", ["-np", "2", "--", "--run-dir", repositoryRoot], "is the repository or a folder above it"),
            ("finetune", ["--phase", "1", "--pretrained", "none", "--run-dir", repositoryRoot + "/data/top"], "is in the repository's data/ folder"),
            ("pretrain", ["-np", "2", "--", "--run-dir", "data/top/new-run"], "--run-dir data/top/new-run is in the repository's data/ folder"),
            ("devtest", ["--run-dir", "configs/dev"], "--run-dir configs/dev is in the repository's configs/ folder"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", "Sources/sweep", "--check"], "is in the repository's Sources/ folder"),
            ("pretrain", ["--run-dir", dir + "/r", "-np", "2"], "-np after cladmop pretrain's arguments: the script's options"),
            // A SPEC audit (session 46): Launch/finetune took no --hostfile (SPEC 3.3: the scripts build the mpirun line).
            ("finetune", ["--phase", "1", "--pretrained", "none", "-np", "2", "--hostfile", odd + "/fifo", "--run-dir", dir + "/f"], "is a FIFO; expected the hostfile"),
            ("finetune", ["--phase", "1", "--pretrained", "none", "--run-dir", dir + "/f", "--", "--hostfile", "hostfiles/localhost"], "--hostfile after --: the script's options"),
            ("pretrain", ["-np", "2", "--run-dir", dir + "/r", "--", "--set", "train.seed=2"], "-- after cladmop pretrain's arguments"),
            ("devtest", ["--pretrained", "configs", "--pretrain-args", "--set train.seed=2", "--run-dir", dir + "/d"], "are alternatives"),
            // Since session 52 Launch/paper resumes an interrupted phase (Launch/finetune --resume) instead of refusing it.
            ("finetune", ["--phase", "1", "--pretrained", "none", "--run-dir", odd + "/paper/finetune-phase1"], "already holds a run (its members); give --resume to continue it"),
            ("finetune", ["--phase", "1", "--pretrained", "none", "--run-dir", odd + "/paper/finetune-phase1", "--resume", "--overwrite"],
             "--resume continues the run in --run-dir and --overwrite replaces it: choose one"),
            ("finetune", ["--phase", "1", "--pretrained", "none", "--run-dir", dir + "/f", "--", "--resume", "auto"], "--resume after --: give --overwrite or --resume before --"),
            ("finetune", ["--phase", "1", "--pretrained", "none", "--run-dir", odd + "/paper/finetune-phase1/members"],
             "is the members folder of the run in \(odd)/paper/finetune-phase1"),
            // A probe of the scripts (session 49): Launch/main moved a fine-tuning run aside (a run's finetune-phase1) and
            // pretrained into its place; Launch/sweep-batch wrote its files into a run and into a run's checkpoints/
            // (--check said the arguments were valid); Launch/paper refused a run's checkpoints/ only after setup.
            ("main", ["--run-dir", odd + "/ftrun"], "holds a fine-tuning run, not an earlier main job's pretraining run"),
            ("finetune", ["--phase", "1", "--pretrained", odd + "/file", "--run-dir", dir + "/f"], "is not a checkpoint (a .json or .safetensors file)"),
            ("finetune", ["--phase", "1", "--pretrained", odd + "/inputs", "--run-dir", dir + "/f"], "is a folder without checkpoints"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", odd + "/ftrun", "--check"], "holds a cladmop run (its metrics.jsonl)"),
            ("sweep-batch", ["--config", "configs/smoke.yaml", "--batches", "8", "--out", odd + "/ftrun/checkpoints", "--check"],
             "is the checkpoints folder of the run in \(odd)/ftrun"),
            ("paper", ["--run-dir", odd + "/ftrun/checkpoints", "--phases", "1"], "is the checkpoints folder of the run in \(odd)/ftrun"),
        ]
        let noSwift = try pathWithoutSwiftBuild(in: odd + "/bin")
        for (script, arguments, expected) in cases {
            let r = try runCommand(repositoryRoot + "/Launch/" + script, arguments, environment: noSwift, timeout: 60)
            XCTAssertEqual(r.status, 2, "\(script) \(arguments): \(r.output)")
            XCTAssertTrue(r.output.contains(expected), "\(script) \(arguments): expected '\(expected)' in \(r.output)")
            XCTAssertFalse(r.output.contains("setup: swift build"), "\(script) \(arguments): ran Launch/setup before refusing: \(r.output)")
        }
        // MPI_FLAGS is split at blanks: a quoted value is refused, pointing at OpenMPI's own variables.
        var quoted = noSwift
        quoted["MPI_FLAGS"] = "--mca plm_rsh_args \"-p 2222\""
        let q = try runCommand(repositoryRoot + "/Launch/pretrain", ["-np", "2", "--", "--run-dir", dir + "/r"], environment: quoted, timeout: 60)
        XCTAssertEqual(q.status, 2, q.output)
        XCTAssertTrue(q.output.contains("it is split at blanks, without quoting; give a parameter whose value has blanks as OpenMPI's variable"), q.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "nothing may be written for a refused launch")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: odd + "/inputs"), ["phase_I_train.csv"], "a folder of inputs is left as it was")
        // Help after a study's name is the script's help: status 0, nothing set up or featurized.
        let help = try runCommand(repositoryRoot + "/Launch/batch-studies", ["sct", "--help"], timeout: 60)
        XCTAssertEqual(help.status, 0, help.output)
        XCTAssertTrue(help.output.contains("The two batch-size studies"), help.output)
        XCTAssertFalse(help.output.contains("setup:") || help.output.contains("featurize:"), help.output)
    }

    /// Launch/devtest without --pretrained reuses a finished DIR/pretrain only when it is the run its --pretrain-args
    /// would make: another lever had been measured as the earlier run, exit 0 (an eleventh probe). Refused before any
    /// work, naming the keys (that matching runs pass: the runs of docs/outcome.md, checked by hand when it was written).
    func testDevtestRefusesToReuseAPretrainingRunOfAnotherConfiguration() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: repositoryRoot + "/.build/release/cladmop"), "Launch/devtest runs .build/release/cladmop")
        let dir = NSTemporaryDirectory() + "cladmop-devtest-reuse-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/pretrain", withIntermediateDirectories: true)
        let resolved = try runCommand(repositoryRoot + "/.build/release/cladmop", ["config", "--config", "configs/pretrain.yaml", "--set", "model.dim=32"])
        XCTAssertEqual(resolved.status, 0, resolved.output)
        try resolved.output.write(toFile: dir + "/pretrain/config.yaml", atomically: true, encoding: .utf8)
        try "{\"type\":\"summary\"}\n".write(toFile: dir + "/pretrain/metrics.jsonl", atomically: true, encoding: .utf8)
        let r = try runCommand(repositoryRoot + "/Launch/devtest", ["--run-dir", dir, "--phases", "1"], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("holds a finished pretraining run of another model") && r.output.contains("in the run: model.dim: 32")
                      && r.output.contains("asked for:  model.dim: 64"), r.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["pretrain"], "nothing may be written for a refused launch")
    }

    /// Launch/paper fine-tunes (or resumes) the pretraining run at --run-dir only when it is configs/paper.yaml's model
    /// with the phase I report trials kept out of SCT: a finished run of configs/pretrain.yaml there had been fine-tuned
    /// as the paper's model, without a word (a probe, session 41). Refused before featurizing, naming the keys.
    /// A Launch script stopped by SIGTERM also stops what its job left behind (a probe: mpirun's ssh to a node that
    /// never answered outlived mpirun, holding the script's output open for 13 minutes): the processes below the job
    /// are killed after its end. The leftover here is in a process group of its own (`set -m`), as OpenMPI puts its ssh.
    func testAStoppedJobTakesWhatItStartedAlong() throws {
        let dir = NSTemporaryDirectory() + "cladmop-stop-job-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let driver = dir + "/driver.sh"
        try Data("""
            #!/bin/bash
            source "\(repositoryRoot)/Launch/common.sh"
            run_job bash -c 'set -m; sleep 600 & echo $! > "\(dir)/left.pid"; sleep 600'
            """.utf8).write(to: URL(fileURLWithPath: driver))
        chmod(driver, 0o755)
        let script = Process()
        script.executableURL = URL(fileURLWithPath: driver)
        script.standardOutput = FileHandle.nullDevice
        script.standardError = FileHandle.nullDevice
        try script.run()
        let start = Date()
        while !FileManager.default.fileExists(atPath: dir + "/left.pid") && Date().timeIntervalSince(start) < 20 { usleep(20_000) }
        usleep(200_000)
        let text = try String(contentsOfFile: dir + "/left.pid", encoding: .utf8)
        let left = try XCTUnwrap(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), text)
        kill(script.processIdentifier, SIGTERM)
        // (With the old run_job, isRunning stayed true while the job's leftover lived, and waitUntilExit waited as long.)
        let sent = Date()
        while script.isRunning && Date().timeIntervalSince(sent) < 40 { usleep(100_000) }
        XCTAssertFalse(script.isRunning, "the script or what its job left still runs 40 s after SIGTERM")
        if !script.isRunning {
            XCTAssertEqual(script.terminationReason, .uncaughtSignal)
            XCTAssertEqual(script.terminationStatus, SIGTERM)
        }
        var gone = false
        for _ in 0..<50 {
            let stat = try? String(contentsOfFile: "/proc/\(left)/stat", encoding: .utf8)
            if stat == nil || stat!.split(separator: ")").last!.split(separator: " ").first == "Z" { gone = true; break }
            usleep(100_000)
        }
        XCTAssertTrue(gone, "the job's background process (pid \(left)) outlived the stopped script")
        if !gone { kill(left, SIGKILL) }
        if script.isRunning { script.terminate() }
    }

    func testPaperRefusesAPretrainingRunOfAnotherConfiguration() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: repositoryRoot + "/.build/release/cladmop"), "Launch/paper runs .build/release/cladmop")
        let dir = NSTemporaryDirectory() + "cladmop-paper-reuse-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: dir + "-bin") }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let resolved = try runCommand(repositoryRoot + "/.build/release/cladmop", ["config", "--config", "configs/pretrain.yaml"])
        XCTAssertEqual(resolved.status, 0, resolved.output)
        try resolved.output.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        try "{\"type\":\"summary\"}\n".write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let r = try runCommand(repositoryRoot + "/Launch/paper", ["--run-dir", dir, "--phases", "1"], environment: try pathWithoutSwiftBuild(in: dir + "-bin"), timeout: 120)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("holds a pretraining run of another model than configs/paper.yaml") && r.output.contains("in the run: model.dim: 64")
                      && r.output.contains("asked for:  model.dim: 128"), r.output)
        XCTAssertFalse(r.output.contains("featurize:"), r.output)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["config.yaml", "metrics.jsonl"], "nothing may be written for a refused launch")
        // Positive control: a run of configs/paper.yaml with the script's exclusions is the same model (no keys differ).
        let own = try runCommand(repositoryRoot + "/.build/release/cladmop", ["config", "--config", "configs/paper.yaml",
                                                                             "--set", "data.exclude_csvs=[data/splits/phase_I_latest20.csv]"])
        XCTAssertEqual(own.status, 0, own.output)
        try own.output.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let same = try runCommand("/bin/bash", ["-c", "source Launch/common.sh && cd \"$ROOT\" && model_differences \"$0\" '^data\\.feature_store:' "
                                                + "--config configs/paper.yaml --set 'data.exclude_csvs=[data/splits/phase_I_latest20.csv]' && printf '[%s]' \"$MODEL_DIFF\"",
                                                dir + "/config.yaml"])
        XCTAssertEqual(same.status, 0, same.output)
        XCTAssertTrue(same.output.hasSuffix("[]"), same.output)
    }

    /// Every Launch script answers -h / --help with its usage on stdout, exit 0, before any work (Launch/pretrain had
    /// passed --help on to cladmop, building it first when it was missing; the others printed a usage line, exit 2).
    func testLaunchScriptsPrintTheirHelp() throws {
        for script in ["main", "devtest", "finetune", "paper", "pretrain", "sweep-batch", "ablations", "bench", "batch-studies", "setup", "test"] {
            for flag in ["--help", "-h"] {
                let r = try runCommand(repositoryRoot + "/Launch/" + script, [flag], timeout: 60)
                XCTAssertEqual(r.status, 0, "\(script) \(flag): \(r.output)")
                XCTAssertTrue(r.output.contains("Launch/" + script), "\(script) \(flag): no usage in \(r.output)")
                XCTAssertFalse(r.output.contains("swift build"), "\(script) \(flag) ran Launch/setup: \(r.output)")
            }
        }
    }

    /// Launch/main and Launch/devtest pretrain "on all cores" with at most train.global_batch ranks (pretrain refuses
    /// more ranks than rows; on a machine of more than 64 cores the main job had failed after featurizing).
    func testLaunchScriptsPretrainOnAtMostGlobalBatchRanks() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: repositoryRoot + "/.build/release/cladmop"),
                          "the Launch scripts run .build/release/cladmop (Launch/setup builds it; Launch/test runs setup first)")
        let script = "source Launch/common.sh && pretrain_np 100 --config configs/pretrain.yaml && pretrain_np 2 --config configs/pretrain.yaml"
            + " && pretrain_np 100 --config configs/pretrain.yaml --set train.global_batch=80"
        let r = try runCommand("/bin/bash", ["-c", script], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output.split(separator: "\n").filter { Int($0) != nil }, ["64", "2", "80"], r.output)
        XCTAssertTrue(r.output.contains("pretraining on 64 ranks, not 100: train.global_batch is 64"), r.output)
        let bad = try runCommand("/bin/bash", ["-c", "source Launch/common.sh && pretrain_np 4 --config configs/none.yaml"], timeout: 60)
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("configs/none.yaml"), bad.output)
    }

    /// Launch's split_once keeps an existing pair only when it is the split of its source (the same trials, the
    /// earlier ids in the first half): halves of an older source are refused, naming both (a development test made
    /// again from a remade first-level split could otherwise share trials with an older selection file).
    func testLaunchSplitOnceRefusesHalvesOfAnotherSource() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: repositoryRoot + "/.build/release/cladmop"),
                          "the Launch scripts run .build/release/cladmop (Launch/setup builds it; Launch/test runs setup first)")
        let dir = NSTemporaryDirectory() + "cladmop-split-once-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Whole records of a bundled file (criteria span lines): its first 21 records, then 2 more appended.
        let text = try String(contentsOfFile: repositoryRoot + "/data/top/phase_I_valid.csv", encoding: .utf8)
        let records = (text as NSString).components(separatedBy: "\nNCT")     // UTF-16: a CR LF file too
        try (records[0..<21].joined(separator: "\nNCT") + "\n").write(toFile: dir + "/src.csv", atomically: true, encoding: .utf8)
        let split = "source Launch/common.sh && split_once \(dir)/src.csv 0.8 \(dir)/a.csv \(dir)/b.csv && echo kept"
        let first = try runCommand("/bin/bash", ["-c", split], timeout: 60)
        XCTAssertEqual(first.status, 0, first.output)
        let again = try runCommand("/bin/bash", ["-c", split], timeout: 60)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("kept") && !again.output.contains("split:"), "the same pair, not split again: \(again.output)")
        try (records[0..<23].joined(separator: "\nNCT") + "\n").write(toFile: dir + "/src.csv", atomically: true, encoding: .utf8)
        let changed = try runCommand("/bin/bash", ["-c", split], timeout: 60)
        XCTAssertEqual(changed.status, 2, changed.output)
        XCTAssertTrue(changed.output.contains("\(dir)/a.csv and \(dir)/b.csv are not the split of \(dir)/src.csv at 0.8"), changed.output)
        // The same trials cut at another fraction are not this split either.
        try (records[0..<21].joined(separator: "\nNCT") + "\n").write(toFile: dir + "/src.csv", atomically: true, encoding: .utf8)
        let other = try runCommand("/bin/bash", ["-c", split.replacingOccurrences(of: " 0.8 ", with: " 0.5 ")], timeout: 60)
        XCTAssertEqual(other.status, 2, other.output)
        XCTAssertTrue(other.output.contains("are not the split of \(dir)/src.csv at 0.5"), other.output)
        // A python3 that does not run, first on PATH (an environment probe: Launch/main had ended with exit 2 and no
        // word, after setting the earlier run aside): the halves' check names it.
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try Data("#!/bin/sh\nexit 1\n".utf8).write(to: URL(fileURLWithPath: dir + "/bin/python3"))
        XCTAssertEqual(chmod(dir + "/bin/python3", 0o755), 0)
        let broken = try runCommand("/bin/bash", ["-c", "PATH=\(dir)/bin:$PATH; " + split], timeout: 60)
        XCTAssertEqual(broken.status, 2, broken.output)
        XCTAssertTrue(broken.output.contains("python3 is needed to check that \(dir)/a.csv and \(dir)/b.csv are the split of \(dir)/src.csv")
                      && broken.output.contains("\(dir)/bin/python3"), broken.output)
    }

    /// A result folder that another Launch script is writing (its lock beside the folder held) is refused before any
    /// work: a second Launch/main on the same --run-dir had set the first one's run aside between two of its commands.
    func testASecondLaunchOnTheSameResultFolderIsRefused() throws {
        let dir = NSTemporaryDirectory() + "cladmop-launch-lock-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The lock held by this shell (another open file description than the script's own: refused as another's).
        let line = "exec 9>>\"$0/.m.launch-lock\" && flock -n 9 && { Launch/main --run-dir \"$0/m\"; echo \"status=$?\"; }"
        let r = try runCommand("/bin/bash", ["-c", line, dir], timeout: 120)
        XCTAssertTrue(r.output.contains("status=2"), r.output)
        XCTAssertTrue(r.output.contains("Launch/main: --run-dir \(dir)/m is being written by another Launch script"), r.output)
        XCTAssertFalse(r.output.contains("setup:"), "refused before setup: \(r.output)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/m"))
    }

    /// What the Launch scripts take from the environment (an environment probe): a TMPDIR that is no writable folder
    /// is refused naming it (mpirun had failed with exit 1 and its own text, retried by --max-restarts); numbers are
    /// in the C locale whatever LC_ALL says (under a decimal-comma locale sweep-batch's awk wrote a learning rate
    /// 1,5625e-05 that the configuration refused); OMPI_MCA_* settings of the environment can be named.
    func testLaunchScriptsReadTheirEnvironment() throws {
        let missing = try runCommand("/bin/bash", ["-c", "source Launch/common.sh && echo sourced"], environment: ["TMPDIR": "/nonexistent/cladmop-tmp"], timeout: 60)
        XCTAssertEqual(missing.status, 2, missing.output)
        XCTAssertTrue(missing.output.contains("TMPDIR=/nonexistent/cladmop-tmp: expected a folder this user can write"), missing.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/nonexistent/cladmop-tmp"))
        let locale = try runCommand("/bin/bash", ["-c", "source Launch/common.sh && echo \"numeric=$LC_NUMERIC all=${LC_ALL-unset} lang=$LANG\""],
                                    environment: ["LC_ALL": "C.UTF-8", "LANG": "en_US.UTF-8"], timeout: 60)
        XCTAssertEqual(locale.status, 0, locale.output)
        XCTAssertTrue(locale.output.contains("numeric=C all=unset lang=C.UTF-8"), locale.output)
        let mca = try runCommand("/bin/bash", ["-c", "source Launch/common.sh && mca_note"], environment: ["OMPI_MCA_btl": "openib,self"], timeout: 60)
        XCTAssertEqual(mca.status, 0, mca.output)
        XCTAssertTrue(mca.output.contains("mpirun also read these settings from the environment: ") && mca.output.contains("OMPI_MCA_btl=openib,self"), mca.output)
    }
}

/// The libFuzzer harnesses keep compiling against the parsers and run clean on a short budget, with a fixed seed (the
/// same inputs on every run: a crash the long runs have not found would otherwise fail one CI run in many; the
/// 10^6-execution runs, each with a new seed, are in docs/reliability.md: `Tests/Fuzz/run 1000000`).
final class FuzzSmokeTests: XCTestCase {
    func testFuzzHarnessesBuildAndRun() throws {
        let r = try runCommand(repositoryRoot + "/Tests/Fuzz/run", ["3000"], environment: ["FUZZ_SEED": "1"], timeout: 600)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output.components(separatedBy: "stat::number_of_executed_units: 3000").count, 3, r.output)
    }
}

/// `cladmop bench` at a tiny shape (a smoke test, not a timing: the figures are in docs/performance.md):
/// the training benchmark under mpirun with 2 ranks prints one JSON object with the keys outside checks
/// read, and the kernel benchmark measures the squares, the model's GEMM shapes, the attention core and the
/// collectives.
final class BenchSmokeTests: XCTestCase {
    var cladmop: String { productsFolder.appendingPathComponent("cladmop").path }

    func testTrainingBenchmarkJSONUnderTwoRanks() throws {
        let tiny = ["model.dim=16", "model.heads=2", "model.mol_layers=1", "model.dis_layers=1", "model.grouping_layers=2",
                    "model.self_layers=1", "model.centroids=8", "model.icd_depth=3", "train.global_batch=6",
                    "bench.mol_tokens=12", "bench.codes=4", "bench.sentences=5", "bench.encoder_dim=24", "bench.steps=2", "bench.warmup=1"]
        let r = try mpirun(np: 2, executable: cladmop,
                           arguments: ["bench", "--config", repositoryRoot + "/configs/bench.yaml", "--json"] + tiny.flatMap { ["--set", $0] })
        XCTAssertEqual(r.status, 0, r.output)
        let line = try XCTUnwrap(r.output.split(separator: "\n").first { $0.hasPrefix("{") }, r.output)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(json["world_size"] as? Int, 2)
        XCTAssertEqual(json["global_batch"] as? Int, 6)
        for key in ["samples_per_second", "flops_per_sample", "achieved_gflops", "peak_rss_mb"] {
            XCTAssertGreaterThan(json[key] as? Double ?? 0, 0, key)
        }
        XCTAssertLessThanOrEqual(json["useful_flops_per_sample"] as! Double, json["flops_per_sample"] as! Double)
        // SPEC 8's split "compute / all-gather / all-reduce / optimizer": the all-gathers apart from the loss, which
        // ms_allgather_loss holds with them.
        let gather = try XCTUnwrap(json["ms_allgather"] as? Double, String(line)), loss = try XCTUnwrap(json["ms_loss"] as? Double, String(line))
        XCTAssertGreaterThan(gather, 0, String(line)); XCTAssertGreaterThan(loss, 0, String(line))
        XCTAssertLessThanOrEqual(gather, json["ms_allgather_loss"] as! Double + 1e-9, String(line))
        XCTAssertEqual((json["comm_share"] as! Double) * (json["ms_step"] as! Double), gather + (json["ms_allreduce"] as! Double),
                       accuracy: 1e-9 * (json["ms_step"] as! Double), "communication: the collectives only, not the loss")
        // SPEC 8's "peak RSS per rank": each rank's, whose largest is peak_rss_mb.
        let perRank = try XCTUnwrap(json["peak_rss_mb_per_rank"] as? [Int], String(line))
        XCTAssertEqual(perRank.count, 2)
        XCTAssertTrue(perRank.allSatisfy { $0 > 0 }, String(line))
        XCTAssertEqual(Double(perRank.max()!), (json["peak_rss_mb"] as! Double).rounded(), accuracy: 1, String(line))
    }

    func testKernelBenchmarkMeasuresTheModelsGEMMShapes() throws {
        let r = try mpirun(np: 2, executable: cladmop, arguments: ["bench", "--kernels", "--seconds", "0.01", "--json"])
        XCTAssertEqual(r.status, 0, r.output)
        let line = try XCTUnwrap(r.output.split(separator: "\n").first { $0.hasPrefix("{") }, r.output)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertGreaterThan(json["sgemm_1024_gflops"] as? Double ?? 0, 0)
        XCTAssertEqual((json["sgemm_model_shapes"] as? [[String: Any]])?.count, 9)
        XCTAssertGreaterThan(json["sgemm_model_mix_gflops"] as? Double ?? 0, 0)
        XCTAssertGreaterThan((json["attention"] as? [String: Any])?["backward_gflops"] as? Double ?? 0, 0)
        XCTAssertEqual((json["collectives"] as? [[String: Any]])?.count, 4)
        XCTAssertNotNil(json["fp32_rule"] as? String)
        XCTAssertGreaterThan(json["fp32_model_mix_gflops"] as? Double ?? 0, 0)
        XCTAssertEqual((json["sgemm"] as? [[String: Any]])?.compactMap { $0["fp32_backend"] as? String }.count, 9)
    }

    /// `CLADMOP_GEMM_BACKEND` forces the fp32 library (every shape then reports it); an unknown value exits 2 naming it.
    func testGEMMBackendEnvironmentIsValidatedAndObeyed() throws {
        let r = try mpirun(np: 1, executable: cladmop, arguments: ["bench", "--kernels", "--seconds", "0.01", "--json"],
                           environment: ["CLADMOP_GEMM_BACKEND": "openblas"])
        XCTAssertEqual(r.status, 0, r.output)
        let line = try XCTUnwrap(r.output.split(separator: "\n").first { $0.hasPrefix("{") }, r.output)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(json["fp32_rule"] as? String, "OpenBLAS")
        let shapes = (json["sgemm_model_shapes"] as? [[String: Any]] ?? []) + (json["sgemm"] as? [[String: Any]] ?? [])
        XCTAssertEqual(Set(shapes.compactMap { $0["fp32_backend"] as? String }), ["openblas"])
        let bad = try runProduct("cladmop", ["--help"], environment: ["CLADMOP_GEMM_BACKEND": "mkl"])
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("CLADMOP_GEMM_BACKEND=mkl: expected auto, openblas or onednn"), bad.output)
    }

    /// The CLI flushes subnormal floats to zero before anything runs (ranks under mpirun too; `bench --kernels`
    /// reports its thread's mode); `CLADMOP_DENORMALS=keep` keeps them; any other value exits 2 naming it.
    func testSubnormalsAreFlushedUnlessKept() throws {
        func flushed(_ environment: [String: String]) throws -> Bool? {
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["bench", "--kernels", "--seconds", "0.01", "--json"],
                               environment: environment)
            XCTAssertEqual(r.status, 0, r.output)
            let line = try XCTUnwrap(r.output.split(separator: "\n").first { $0.hasPrefix("{") }, r.output)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return json["flush_denormals"] as? Bool
        }
        XCTAssertEqual(try flushed([:]), true)
        XCTAssertEqual(try flushed(["CLADMOP_DENORMALS": "keep"]), false)
        let bad = try runProduct("cladmop", ["--help"], environment: ["CLADMOP_DENORMALS": "yes"])
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("CLADMOP_DENORMALS=yes: expected flush or keep"), bad.output)
    }

    /// OpenBLAS picks its kernels by CPU model and falls back to SSE3 "Prescott" ones on a model it does not know;
    /// cladmop then restarts itself with OPENBLAS_CORETYPE from the CPU's flags (under mpirun too). On a CPU with
    /// AVX2 + FMA the kernels in use are never Prescott; a user's OPENBLAS_CORETYPE is kept as it is.
    func testOpenBLASNeverRunsItsFallbackKernelsOnAVX2Machines() throws {
        let flags = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) } ?? []
        guard flags.isSuperset(of: ["avx2", "fma"]) else { throw XCTSkip("this CPU has no AVX2 + FMA") }
        func core(_ environment: [String: String]) throws -> String {
            let r = try mpirun(np: 2, executable: cladmop, arguments: ["bench", "--kernels", "--seconds", "0.01", "--json"], environment: environment)
            XCTAssertEqual(r.status, 0, r.output)
            let line = try XCTUnwrap(r.output.split(separator: "\n").first { $0.hasPrefix("{") }, r.output)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])["blas_core"] as? String ?? ""
        }
        let chosen = try core([:])
        XCTAssertFalse(chosen.isEmpty)
        XCTAssertNotEqual(chosen.lowercased(), "prescott", "OpenBLAS runs its SSE3 fallback kernels on an AVX2 CPU")
        XCTAssertEqual(try core(["OPENBLAS_CORETYPE": "Prescott"]).lowercased(), "prescott", "the user's OPENBLAS_CORETYPE is kept")
    }
}

/// A PATH whose `swift` fails at once, for Launch scripts that must refuse before Launch/setup: setup's `swift build`
/// inside a running `swift test` waits for the test's own lock on .build, for ever (a regression would hang the run,
/// not fail it). `folder` is the caller's scratch, which it removes.
func pathWithoutSwiftBuild(in dir: String) throws -> [String: String] {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let fake = dir + "/swift"
    if !FileManager.default.fileExists(atPath: fake) {
        try "#!/bin/sh\necho 'setup: swift build: refused by the test (a Launch script ran Launch/setup before refusing)' >&2\nexit 97\n"
            .write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
    }
    return ["PATH": dir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
}
