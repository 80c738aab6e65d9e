import Foundation
import NN
import Support
import TestSupport
import TrialData
import XCTest

/// Faults under mpirun: a killed rank, an error on one rank, a stalled rank, a crash while writing a
/// checkpoint, a damaged newest checkpoint, and a supervised restart that must end where a clean run ends.
final class ReliabilityTests: XCTestCase {
    static let work = NSTemporaryDirectory() + "cladmop-reliability-\(getpid())"
    static var store: String { work + "/synthetic.store" }
    var cladmop: String { productsFolder.appendingPathComponent("cladmop").path }
    static let hierarchy = "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"

    static let fixture = SuiteFixture()
    override class func setUp() {
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        fixture.run {
            let r = try runProduct("cladmop", ["synth", "--trials", "200", "--dim", "16", "--output", store, "--set", hierarchy])
            return r.status == 0 ? nil : r.output
        }
    }
    override func setUpWithError() throws { try Self.fixture.check() }
    override class func tearDown() { try? FileManager.default.removeItem(atPath: work) }

    /// A long evaluation is progress, not a stall: the retrieval over 12,000 validation trials (O(n^2), seconds) beats the
    /// watchdog at every block, so a 2 s limit passes (the nineteenth probe: 50,000 validation trials, a minute, ended a
    /// healthy run at the 60 s floor, "rank 1 is stuck"; this run ended the same way before the beats).
    func testALongEvaluationIsProgressForTheStallWatchdog() throws {
        let store = Self.work + "/large.store"
        let made = try runProduct("cladmop", ["synth", "--trials", "24000", "--dim", "64", "--output", store, "--set", Self.hierarchy], timeout: 300)
        XCTAssertEqual(made.status, 0, made.output)
        defer { try? FileManager.default.removeItem(atPath: store) }
        // The release binary where there is one: the limit is for the evaluation's blocks, not for a debug build's.
        let r = try mpirun(np: 2, executable: releaseOrDebugProduct("cladmop"), arguments: ["pretrain", "--config", repositoryRoot + "/configs/sweep-synthetic.yaml",
            "--run-dir", Self.work + "/long-eval", "--set", "data.synthetic=true", "--set", "data.feature_store=\(store)", "--set", Self.hierarchy,
            "--set", "data.validation_fraction=0.5", "--set", "train.max_steps=1", "--set", "train.stall_timeout=2", "--set", "log.tensorboard=false"],
            timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("over 12000") && !r.output.contains("no training progress"), r.output)
    }

    /// Training's watchdog ends with training: rank 0's report after it (here a PNG renderer that takes 8 s a plot) is
    /// no stall under a 5 s limit (a read-only review found the report, and a checkpoint after the last beat, inside
    /// the training watchdog's reach: this run ended "no training progress for 5 s" on its finished model).
    func testTheReportAfterTrainingIsNoStall() throws {
        let bin = Self.work + "/slow-renderer"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try "#!/bin/sh\nsleep 8\nexit 1\n".write(toFile: bin + "/rsvg-convert", atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(bin + "/rsvg-convert", 0o755), 0)
        let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("slow-report", steps: 4).map { $0 == "train.stall_timeout=8" ? "train.stall_timeout=5" : $0 },
                           environment: ["PATH": path], timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertFalse(r.output.contains("no training progress"), r.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: Self.work + "/slow-report/report.md"), r.output)
    }

    /// The processes whose command line holds `text` (a run folder: mpirun and its ranks), read from /proc (no pgrep,
    /// which a machine may lack).
    func processes(naming text: String) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = Int32(entry), pid != getpid(), let cmd = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            return String(decoding: cmd, as: UTF8.self).contains(text) ? pid : nil
        }
    }

    /// Arguments of a pretraining run in `run` (a name under the work folder, or an absolute path).
    func args(_ run: String, steps: Int = 12, resume: Bool = false) -> [String] {
        ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", run.hasPrefix("/") ? run : Self.work + "/" + run,
         "--set", "data.synthetic=true", "--set", "data.feature_store=\(Self.store)", "--set", Self.hierarchy,
         "--set", "train.max_steps=\(steps)", "--set", "train.epochs=20", "--set", "checkpoint.every_steps=4",
         "--set", "checkpoint.keep_last=5", "--set", "train.stall_timeout=8"] + (resume ? ["--resume", "auto"] : [])
    }

    func parameters(_ run: String, step: Int) throws -> [Float] {
        let file = try SafetensorsFile(path: Self.work + "/\(run)/checkpoints/" + String(format: "step-%08d.safetensors", step))
        return try file.tensors.keys.sorted().filter { !$0.hasPrefix("optimizer.") }.flatMap { try file.floats($0) }
    }

    func testKilledRankEndsTheJobQuickly() throws {
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("kill"), environment: ["CLADMOP_FAULT": "crash:1:3"], timeout: 60)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertLessThan(r.seconds, 30)
    }

    func testErrorOnOneRankAbortsWithItsMessage() throws {
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("throw"), environment: ["CLADMOP_FAULT": "throw:1:3"], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("injected error on rank 1 at step 3"), r.output)
        XCTAssertLessThan(r.seconds, 30)
    }

    func testStalledRankIsDetectedByTheWatchdog() throws {
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("stall"), environment: ["CLADMOP_FAULT": "stall:1:3"], timeout: 60)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("no training progress for"), r.output)
        // Rank 1's main thread sleeps before a collective while its heartbeats go on: rank 0 names it.
        XCTAssertTrue(r.output.contains("rank 1 (host") && r.output.contains("is stuck before collective"), r.output)
        XCTAssertLessThan(r.seconds, 30)
    }

    /// A rank stopped with SIGSTOP (no heartbeats either) under the default stall policy (max(60 s, 10 x the
    /// slowest step)): the job ends within 90 s, and the message names the stopped rank.
    func testStoppedRankEndsTheJobWithDefaultSettings() throws {
        let run = Self.work + "/sigstop"
        let args = ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", run,
                    "--set", "data.synthetic=true", "--set", "data.feature_store=\(Self.store)", "--set", Self.hierarchy,
                    "--set", "train.max_steps=1000000", "--set", "train.epochs=100000", "--set", "train.log_every=100000"]
        let stopper = Thread {
            // Once training runs (metrics.jsonl has its first lines), stop rank 1.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline && ((try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8))?.contains("eval") != true) {
                usleep(200_000)
            }
            for pid in self.processes(naming: run) {
                let environ = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
                if environ.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=1" }) {
                    kill(pid, SIGSTOP)
                }
            }
        }
        stopper.start()
        let r = try mpirun(np: 2, executable: cladmop, arguments: args, timeout: 150)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertLessThan(r.seconds, 90 + 30, "ended \(r.seconds) s after the start")
        XCTAssertTrue(r.output.contains("stopped answering: no heartbeat"), r.output)
        XCTAssertTrue(r.output.contains("rank 1 (host"), r.output)
    }

    /// A rank stopped before the first collective (CLADMOP_FAULT=stop:1:startup: right after it read its configuration,
    /// before any activity's watchdog starts): the job's watchdog ends the job, naming the rank. Without it (or with
    /// train.stall_timeout=0) rank 0 waits in the configuration check for ever.
    func testRankStoppedAtStartupEndsTheJob() throws {
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("startup"), environment: ["CLADMOP_FAULT": "stop:1:startup"], timeout: 90)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertLessThan(r.seconds, 30)
        XCTAssertTrue(r.output.contains("no job progress for") && r.output.contains("rank 1 (host") && r.output.contains("stopped answering"), r.output)
        print("stopped at startup: \(String(format: "%.1f", r.seconds)) s: " + (r.output.split(separator: "\n").first { $0.contains("no job progress") } ?? ""))
    }

    /// A process of the job that ends without starting MPI (an app context running another program, here /bin/true):
    /// the cladmop rank would wait in MPI_Init for ever (OpenMPI 4); it gives up CLADMOP_MPI_START_TIMEOUT seconds
    /// (15 here; 120 by default) after it began starting MPI, with a message.
    func testAProcessThatNeverStartsMPIEndsTheJob() throws {
        let r = try mpirun(np: 1, executable: cladmop, arguments: args("nompi") + [":", "-np", "1", "/bin/true"],
                           environment: ["CLADMOP_MPI_START_TIMEOUT": "15"], timeout: 120)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertGreaterThanOrEqual(r.seconds, 14, r.output)
        XCTAssertLessThan(r.seconds, 60, r.output)
        XCTAssertTrue(r.output.contains("MPI did not start within 15 s") && r.output.contains("ended without starting MPI"), r.output)
    }

    /// Rank 0 still working after the others are done (CLADMOP_FAULT=linger:12, three times the limit): they wait
    /// for it under the job's watchdog, answering heartbeats, and the command ends with status 0. (Had they gone
    /// silent into MPI_Finalize, rank 0's job watchdog would have ended a finished job, blaming rank 1.)
    func testRankZeroFinishingLastIsNotTakenForAStoppedPeer() throws {
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("linger", steps: 2) + ["--set", "train.stall_timeout=4"],
                           environment: ["CLADMOP_FAULT": "linger:12"], timeout: 90)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertGreaterThanOrEqual(r.seconds, 12)
        XCTAssertFalse(r.output.contains("stopped answering"), r.output)
    }

    func testCrashWhileWritingACheckpointKeepsThePreviousOne() throws {
        // The crash hits the step-8 checkpoint after its tensors file is on disk but before its JSON.
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("ckpt"), environment: ["CLADMOP_FAULT": "checkpoint_crash:between:8"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(r.seconds, 30)
        let dir = Self.work + "/ckpt/checkpoints"
        let jsons = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".json") && $0.hasPrefix("step-") }
        XCTAssertEqual(jsons, ["step-00000004.json"], "only the previous checkpoint looks complete")
        // Resume continues from step 4 and the run completes like an uninterrupted one.
        let again = try mpirun(np: 2, executable: cladmop, arguments: args("ckpt", resume: true), timeout: 120)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("step-00000004.json (step 4"), again.output)
    }

    /// The best checkpoint a checkpoint records, and the one checkpoints/best.json names.
    func bestPointers(_ run: String, step: Int) throws -> (recorded: String?, named: String?) {
        let dir = Self.work + "/\(run)/checkpoints/"
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + String(format: "step-%08d.json", step)))) as? [String: Any]
        let pointer = (try? Data(contentsOf: URL(fileURLWithPath: dir + "best.json"))).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        return ((meta?["bestCheckpoint"] as? String).map { "checkpoints/\($0).safetensors" }, pointer?["checkpoint"] as? String)
    }

    /// A kill after a checkpoint and before its best.json (a fifteenth probe: a full disk there had left best.json naming
    /// an older checkpoint, or none, and --resume auto ended the run so; finetune and evaluate took the older one):
    /// resuming makes best.json name the resumed checkpoint's best.
    func testAKillBeforeBestJsonIsMendedByResume() throws {
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("pointer"), environment: ["CLADMOP_FAULT": "checkpoint_crash:pointer:12"], timeout: 60)
        XCTAssertNotEqual(r.status, 0, r.output)
        let before = try bestPointers("pointer", step: 12)
        // Step 12 holds the run's first evaluation (its last step), so it is its own best.
        XCTAssertEqual(before.recorded, "checkpoints/step-00000012.safetensors")
        XCTAssertNotEqual(before.named, before.recorded, "the kill came before best.json followed the step-12 checkpoint")
        let again = try mpirun(np: 2, executable: cladmop, arguments: args("pointer", resume: true), timeout: 120)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("resume: checkpoints/best.json ") && again.output.contains("the resumed checkpoint's best"), again.output)
        let after = try bestPointers("pointer", step: 12)
        XCTAssertEqual(after.named, before.recorded)
        XCTAssertEqual(after.named, after.recorded)
    }

    /// A best.json that cannot be written (immutable here; a full disk in the probe) takes its step's checkpoint along:
    /// the newest checkpoint left agrees with best.json, and a resume with room again ends as a run that never failed.
    func testACheckpointWhoseBestJsonFailsIsRemoved() throws {
        let first = try mpirun(np: 2, executable: cladmop, arguments: args("pointerfail", steps: 12))
        XCTAssertEqual(first.status, 0, first.output)
        let best = Self.work + "/pointerfail/checkpoints/best.json"
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chattr") else { throw XCTSkip("no /usr/bin/chattr (Debian: e2fsprogs)") }
        let lock = try runCommand("/usr/bin/chattr", ["+i", best])
        guard lock.status == 0 else { throw XCTSkip("chattr +i does not work here (needs root and ext4-like file systems): \(lock.output)") }
        defer { _ = try? runCommand("/usr/bin/chattr", ["-i", best]) }
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("pointerfail", steps: 16, resume: true), timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        // (The first checkpoint after step 12: the end of an epoch or step 16.)
        XCTAssertTrue(r.output.contains("writing checkpoint at step 1") && r.output.contains("best.json: cannot rename")
                      && r.output.contains("previous checkpoints are intact"), r.output)
        let left = try FileManager.default.contentsOfDirectory(atPath: Self.work + "/pointerfail/checkpoints").filter { $0.hasPrefix("step-") }
        XCTAssertEqual(left.max(), "step-00000012.safetensors", "the failed step's checkpoint is removed: \(left)")
        XCTAssertEqual(try bestPointers("pointerfail", step: 12).named, try bestPointers("pointerfail", step: 12).recorded)
        XCTAssertEqual(try runCommand("/usr/bin/chattr", ["-i", best]).status, 0)
        let again = try mpirun(np: 2, executable: cladmop, arguments: args("pointerfail", steps: 16, resume: true), timeout: 120)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("step-00000012.json (step 12"), again.output)
        let end = try bestPointers("pointerfail", step: 16)
        XCTAssertEqual(end.named, end.recorded)
    }

    /// A run folder removed while its command writes it (a fifteenth probe: fine-tuning recreated checkpoints/ and ended
    /// with status 0; a second command started at the same path mixed its files with the first's): the next write stops
    /// the job, naming the folder; a new folder at the path is left as it is. Also for a relative --run-dir (as the
    /// Launch scripts give), which the metrics log names by its absolute path.
    func testARunFolderRemovedOrReplacedMidRunStopsTheJob() throws {
        for (name, replaced, relative) in [("removed", false, false), ("replaced", true, false), ("relative", false, true)] {
            let dir = Self.work + "/" + name
            let process = Process()
            process.executableURL = URL(fileURLWithPath: cladmop)
            var arguments = args(dir, steps: 100_000) + ["--set", "train.epochs=100000", "--set", "checkpoint.every_steps=20", "--set", "train.log_every=5"]
            if relative {
                process.currentDirectoryURL = URL(fileURLWithPath: Self.work)
                arguments[arguments.firstIndex(of: dir)!] = name
            }
            process.arguments = arguments
            let log = Self.work + "/\(name).log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle; process.standardError = handle
            try process.run()
            defer { if process.isRunning { process.terminate() } }
            let start = Date()
            while !FileManager.default.fileExists(atPath: dir + "/checkpoints/best.json") && Date().timeIntervalSince(start) < 60 && process.isRunning { usleep(100_000) }
            XCTAssertTrue(process.isRunning, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
            // Moved away in one step (a recursive removal races the writer), deleted once the command has ended.
            let aside = dir + "-aside"
            XCTAssertEqual(rename(dir, aside), 0)
            defer { try? FileManager.default.removeItem(atPath: aside) }
            if replaced { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false) }
            let removedAt = Date()
            while process.isRunning && Date().timeIntervalSince(removedAt) < 30 { usleep(100_000) }
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            XCTAssertFalse(process.isRunning, "still training 30 s after its folder was removed: \(output)")
            XCTAssertEqual(process.terminationStatus, 2, output)
            XCTAssertTrue(output.contains(replaced ? "the run folder was replaced by another folder of that name while this command was writing it"
                                                   : "the run folder was removed while this command was writing it"), output)
            if replaced {
                XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "nothing written into the new folder")
            } else {
                XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "the folder is not created again")
            }
        }
    }

    /// One held folder by any spelling: held by a relative name with a trailing slash, a write named absolute and with
    /// "." (as the metrics log names its own) is refused once the folder has moved; a sibling of a longer name is not.
    func testAHeldRunFolderIsToldApartByAnySpelling() throws {
        let base = Self.work + "/spelling"
        try FileManager.default.createDirectory(atPath: base + "/run", withIntermediateDirectories: true)
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(base))
        defer { FileManager.default.changeCurrentDirectoryPath(cwd) }
        let fd = open("run", O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        WrittenFolders.hold("run/", descriptor: fd)
        XCTAssertNoThrow(try WrittenFolders.check(writing: base + "/run/metrics.jsonl"))
        XCTAssertEqual(rename(base + "/run", base + "/moved"), 0)
        XCTAssertThrowsError(try WrittenFolders.check(writing: base + "/./run/checkpoints")) {
            XCTAssertEqual("\($0)", "run/: the run folder was removed while this command was writing it; stopping (a write would create it again, holding part of this run)")
        }
        XCTAssertNoThrow(try WrittenFolders.check(writing: base + "/run-other/x"))
        XCTAssertNoThrow(try WrittenFolders.check(writing: base + "/moved/x"))
    }

    func testDamagedNewestCheckpointFallsBackToThePreviousOne() throws {
        let clean = try mpirun(np: 2, executable: cladmop, arguments: args("clean", steps: 12))
        XCTAssertEqual(clean.status, 0, clean.output)
        let r1 = try mpirun(np: 2, executable: cladmop, arguments: args("damaged", steps: 8))
        XCTAssertEqual(r1.status, 0, r1.output)
        // Damage the payload of the newest checkpoint (step 8).
        let newest = Self.work + "/damaged/checkpoints/step-00000008.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: newest))
        bytes[bytes.count - 3] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: newest))
        let r2 = try mpirun(np: 2, executable: cladmop, arguments: args("damaged", steps: 12, resume: true))
        XCTAssertEqual(r2.status, 0, r2.output)
        XCTAssertTrue(r2.output.contains("skipping damaged checkpoint"), r2.output)
        XCTAssertTrue(r2.output.contains("step-00000004.json (step 4"), r2.output)
        // From step 4 to 12 again: the same end as the clean run.
        let a = try parameters("damaged", step: 12), b = try parameters("clean", step: 12)
        XCTAssertEqual(a, b)
    }

    /// Resuming on another SCT corpus behind the same configuration (a store at the same path, featurized again with
    /// other content: here another synthetic seed) is refused, naming what changed; it had gone on silently (a fifth
    /// stranger's probe). The original store put back resumes (the control), and so does a copy of it at another path.
    func testResumeRefusesAnotherCorpusBehindTheSamePath() throws {
        let store = Self.work + "/corpus.store", other = Self.work + "/corpus-seed2.store", kept = Self.work + "/corpus-seed1.store"
        for (seed, path) in [("1", kept), ("2", other)] {
            let r = try runProduct("cladmop", ["synth", "--trials", "200", "--dim", "16", "--seed", seed, "--output", path, "--set", Self.hierarchy])
            XCTAssertEqual(r.status, 0, r.output)
        }
        func place(_ source: String) throws {
            try? FileManager.default.removeItem(atPath: store)
            try FileManager.default.copyItem(atPath: source, toPath: store)
        }
        try place(kept)
        let first = try runProduct("cladmop", args("corpus", steps: 4) + ["--set", "data.feature_store=\(store)"])
        XCTAssertEqual(first.status, 0, first.output)
        try place(other)
        let refused = try runProduct("cladmop", args("corpus", steps: 8, resume: true) + ["--set", "data.feature_store=\(store)"])
        XCTAssertEqual(refused.status, 2, refused.output)
        XCTAssertTrue(refused.output.contains("checkpoint was trained on another SCT corpus: the feature store (data.feature_store) holds other data"), refused.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.work + "/corpus/checkpoints/step-00000008.json"))
        try place(kept)
        let resumed = try runProduct("cladmop", args("corpus", steps: 8, resume: true) + ["--set", "data.feature_store=\(store)"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resume: "), resumed.output)
        // The store at another path: the same data resumes (a copy, a moved folder: a seventh probe had been refused
        // for the path alone), other data is refused as above.
        let elsewhere = try runProduct("cladmop", args("corpus", steps: 12, resume: true) + ["--set", "data.feature_store=\(other)"])
        XCTAssertEqual(elsewhere.status, 2, elsewhere.output)
        XCTAssertTrue(elsewhere.output.contains("another SCT corpus"), elsewhere.output)
        let copied = try runProduct("cladmop", args("corpus", steps: 12, resume: true) + ["--set", "data.feature_store=\(kept)"])
        XCTAssertEqual(copied.status, 0, copied.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: Self.work + "/corpus/checkpoints/step-00000012.json"), copied.output)
    }

    /// Ranks that see different checkpoints in --run-dir (a folder not shared, or not in sync, across nodes: here one
    /// rank's copy lacks the newest checkpoint) are refused before anything is loaded, naming the checkpoint each
    /// chose; they had resumed from different steps and trained apart (an eighth stranger's probe: a wrong checkpoint
    /// written, then an MPI error without a cladmop message). The same folder on both ranks resumes (the control).
    func testRanksThatSeeDifferentCheckpointsAreRefused() throws {
        // One command line (--run-dir run) in two working folders, as on two nodes without a shared folder.
        let nodeA = Self.work + "/apart-a", nodeB = Self.work + "/apart-b", a = nodeA + "/run", b = nodeB + "/run"
        let first = try mpirun(np: 2, executable: cladmop, arguments: args(a, steps: 8))
        XCTAssertEqual(first.status, 0, first.output)
        try FileManager.default.copyItem(atPath: nodeA, toPath: nodeB)
        for ext in ["json", "safetensors"] { try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000008." + ext) }
        var relative = args(a, steps: 12, resume: true)
        relative[relative.firstIndex(of: a)!] = "run"
        var flags = ["mpirun", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS"]
        if getuid() == 0 { flags.append("--allow-run-as-root") }
        let r = try runCommand("/usr/bin/env", flags + ["-np", "1", "-wdir", nodeA, cladmop] + relative
                               + [":", "-np", "1", "-wdir", nodeB, cladmop] + relative,
                               environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: 120)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("ranks were started with different run folders"), r.output)
        XCTAssertTrue(r.output.contains("step-00000008.json (step 8") || r.output.contains("step-00000004.json (step 4"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: a + "/checkpoints/step-00000012.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: b + "/checkpoints/step-00000012.json"))
        let same = try mpirun(np: 2, executable: cladmop, arguments: args(a, steps: 12, resume: true))
        XCTAssertEqual(same.status, 0, same.output)
        XCTAssertTrue(same.output.contains("step-00000008.json (step 8"), same.output)
    }

    /// A copy of a run made with hard links (`cp -al`) or symbolic links (`cp -rs`) and resumed: its metrics.jsonl gets a
    /// file of its own before the resumed steps are appended (a sixth probe: they had gone into the original run's log too, steps it never trained).
    func testResumingAHardLinkedCopyLeavesTheOriginalsLog() throws {
        let original = Self.work + "/linked", copy = Self.work + "/linked-copy"
        let first = try runProduct("cladmop", args("linked", steps: 4))
        XCTAssertEqual(first.status, 0, first.output)
        let cp = try runCommand("/bin/cp", ["-al", original, copy])
        XCTAssertEqual(cp.status, 0, cp.output)
        let before = try Data(contentsOf: URL(fileURLWithPath: original + "/metrics.jsonl"))
        let resumed = try runProduct("cladmop", args("linked-copy", steps: 8, resume: true))
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: original + "/metrics.jsonl")), before, "the original's log is unchanged")
        let log = try String(contentsOfFile: copy + "/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(log.contains("\"step\":8"), String(log.suffix(400)))
        // The same with a copy of symbolic links (cp -rs): the log was appended through its link.
        let linked = Self.work + "/symlinked-copy"
        let cps = try runCommand("/bin/cp", ["-rs", original, linked])
        XCTAssertEqual(cps.status, 0, cps.output)
        let again = try runProduct("cladmop", args("symlinked-copy", steps: 8, resume: true))
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: original + "/metrics.jsonl")), before, "the original's log is unchanged")
        XCTAssertFalse(FileManager.default.fileExists(atPath: original + "/checkpoints/step-00000008.json"))
    }

    /// `--resume auto` on a run that ended (its steps, or early stopping) trains nothing and writes nothing: each resume
    /// had added a summary of 0 steps (which sweep-report reads as 0 samples/s), and an early-stopped run trained one
    /// more epoch and wrote another checkpoint. Raising the limit goes on.
    func testResumingAnEndedRunTrainsAndWritesNothing() throws {
        func files(_ run: String) throws -> [String: Data] {
            let dir = Self.work + "/" + run
            var out: [String: Data] = [:]
            for name in try FileManager.default.subpathsOfDirectory(atPath: dir) where !name.hasSuffix("checkpoints") {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), !isDir.boolValue {
                    out[name] = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
                }
            }
            return out
        }
        let early = ["--set", "train.patience=1", "--set", "optimizer.lr=0.05", "--set", "train.epochs=60", "--set", "train.max_steps=0",
                     "--set", "checkpoint.every_steps=0"]
        for (run, extra, reason) in [("ended", [String](), "8 steps"), ("stopped", early, "early stopping, train.patience 1")] {
            let first = try mpirun(np: 2, executable: cladmop, arguments: args(run, steps: 8) + extra)
            XCTAssertEqual(first.status, 0, first.output)
            let before = try files(run)
            // Another learning rate (not part of what a resume must keep): config.yaml is not rewritten either.
            let again = try mpirun(np: 2, executable: cladmop, arguments: args(run, steps: 8, resume: true) + extra + ["--set", "optimizer.lr=0.002"])
            XCTAssertEqual(again.status, 0, again.output)
            XCTAssertTrue(again.output.contains("the run already ended at step") && again.output.contains(reason), again.output)
            XCTAssertEqual(try files(run), before, "\(run): nothing written")
        }
        // Another model, loss or data section: refused naming each key, the checkpoint's value and this command's.
        let other = try mpirun(np: 2, executable: cladmop, arguments: args("ended", steps: 12, resume: true)
                               + ["--set", "model.dim=32", "--set", "data.max_codes=5"])
        XCTAssertEqual(other.status, 2, other.output)
        XCTAssertTrue(other.output.contains("model.dim: 16 in the checkpoint, 32 now") && other.output.contains("data.max_codes: ")
                      && other.output.contains(" in the checkpoint, 5 now"), other.output)
        let longer = try mpirun(np: 2, executable: cladmop, arguments: args("ended", steps: 12, resume: true))
        XCTAssertEqual(longer.status, 0, longer.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: Self.work + "/ended/checkpoints/step-00000012.json"), longer.output)
    }

    func testSupervisorRestartsAfterACrashAndEndsLikeACleanRun() throws {
        let clean = try mpirun(np: 2, executable: cladmop, arguments: args("sup-clean", steps: 12))
        XCTAssertEqual(clean.status, 0, clean.output)
        let marker = Self.work + "/crash-once"
        let launch = repositoryRoot + "/Launch/pretrain"
        // `--config=FILE --run-dir=DIR` (one word each): the script adds no default of its own (it had appended
        // `--run-dir runs/pretrain`, which cladmop took as the last one).
        var own = Array(args("sup").dropFirst())
        for option in ["--config", "--run-dir"] {
            let i = own.firstIndex(of: option)!
            own.replaceSubrange(i...(i + 1), with: [option + "=" + own[i + 1]])
        }
        // With --overwrite over a finished earlier run in the folder, the restarts resume the new run, once the first
        // attempt has replaced the old one (the script had passed --overwrite beside --resume auto, which cladmop
        // refuses: exit 2, no restart).
        let old = try mpirun(np: 2, executable: cladmop, arguments: args("sup", steps: 4))
        XCTAssertEqual(old.status, 0, old.output)
        own.append("--overwrite")
        let r = try runCommand(launch, ["-np", "2", "--max-restarts", "2", "--"] + own,
                               environment: ["CLADMOP_FAULT": "crash:1:7", "CLADMOP_FAULT_ONCE": marker], timeout: 240)
        XCTAssertFalse(FileManager.default.fileExists(atPath: repositoryRoot + "/runs/pretrain/config.yaml") && r.output.contains("runs/pretrain"), r.output)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("restart 1 of 2"), r.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker))
        let a = try parameters("sup", step: 12), b = try parameters("sup-clean", step: 12)
        var d = 0.0, n = 0.0
        for i in a.indices { d += Double(a[i] - b[i]) * Double(a[i] - b[i]); n += Double(b[i]) * Double(b[i]) }
        XCTAssertLessThan((d / n).squareRoot(), 1e-6)
        // A model that diverged ends with exit status 3 and is not restarted: training is deterministic, so from the
        // newest checkpoint (step 4) it would diverge again at step 6.
        var diverging = Array(args("sup-diverge").dropFirst())
        for option in ["--config", "--run-dir"] {
            let i = diverging.firstIndex(of: option)!
            diverging.replaceSubrange(i...(i + 1), with: [option + "=" + diverging[i + 1]])
        }
        let diverged = try runCommand(launch, ["-np", "2", "--max-restarts", "2", "--"] + diverging, environment: ["CLADMOP_FAULT": "diverge:5"], timeout: 240)
        XCTAssertEqual(diverged.status, 3, diverged.output)
        XCTAssertTrue(diverged.output.contains("at step 6: the model diverged"), diverged.output)
        XCTAssertFalse(diverged.output.contains("restart 1 of 2"), diverged.output)
        XCTAssertTrue(diverged.output.contains("Launch/pretrain: not restarted: exit status 3 (the model diverged: a restart would end the same way)"), diverged.output)
    }

    /// SIGTERM to a Launch script (to the script alone, as `kill PID` or a scheduler would send it) stops its mpirun
    /// and every rank, and the script ends by SIGTERM (its status 143 to a shell) without restarting: bash had died at once and left mpirun training on
    /// its own, and with --max-restarts an interrupted mpirun counted as a failure to restart from.
    func testSigtermToTheLaunchScriptStopsItsJob() throws {
        var own = Array(args("sigterm", steps: 1_000_000).dropFirst()) + ["--set", "train.epochs=100000"]
        for option in ["--config", "--run-dir"] {
            let i = own.firstIndex(of: option)!
            own.replaceSubrange(i...(i + 1), with: [option + "=" + own[i + 1]])
        }
        let script = Process()
        script.executableURL = URL(fileURLWithPath: repositoryRoot + "/Launch/pretrain")
        script.arguments = ["-np", "2", "--max-restarts", "2", "--"] + own
        let log = Self.work + "/sigterm.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        script.standardOutput = handle; script.standardError = handle
        try script.run()
        let metrics = Self.work + "/sigterm/metrics.jsonl"
        let start = Date()
        while !FileManager.default.fileExists(atPath: metrics) && Date().timeIntervalSince(start) < 120 && script.isRunning { usleep(200_000) }
        XCTAssertTrue(script.isRunning, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
        kill(script.processIdentifier, SIGTERM)
        let sent = Date()
        while script.isRunning && Date().timeIntervalSince(sent) < 30 { usleep(100_000) }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertFalse(script.isRunning, "the script still runs 30 s after SIGTERM: \(output)")
        if script.isRunning { script.terminate() } else {
            XCTAssertTrue(script.terminationReason == .uncaughtSignal && script.terminationStatus == SIGTERM, "status \(script.terminationStatus): \(output)")
        }
        XCTAssertTrue(output.contains("interrupted (SIGTERM)"), output)
        XCTAssertFalse(output.contains("restart 1"), output)
        // No rank or mpirun of the job is left (they name the run folder on their command line).
        usleep(1_000_000)
        let left = processes(naming: Self.work + "/sigterm")
        XCTAssertEqual(left, [], "processes of the job still run")
        for pid in left { kill(pid, SIGKILL) }
    }

    /// Ctrl-C at a terminal signals the whole foreground process group (the Launch script, mpirun and the ranks); the
    /// script's SIGTERM to mpirun then cut mpirun's cleanup short, and the ranks' shared-memory segments
    /// (/dev/shm/vader_segment.*, 4 MB each) were left behind each time (a probe of the scripts). The script removes
    /// those its job made that no process maps; another job's, running beside it, stay.
    func testCtrlCAtTheTerminalLeavesNoSharedMemorySegments() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: "/dev/shm"), "no /dev/shm here")
        var own = Array(args("ctrl-c", steps: 1_000_000).dropFirst()) + ["--set", "train.epochs=100000"]
        for option in ["--config", "--run-dir"] {
            let i = own.firstIndex(of: option)!
            own.replaceSubrange(i...(i + 1), with: [option + "=" + own[i + 1]])
        }
        let metrics = Self.work + "/ctrl-c/metrics.jsonl"
        // A job control shell: the script runs in a process group of its own, which gets the SIGINT, as at a terminal.
        let quoted = ([repositoryRoot + "/Launch/pretrain", "-np", "2", "--"] + own).map { "'" + $0 + "'" }.joined(separator: " ")
        let driver = """
            set -m
            \(quoted) &
            pid=$!
            for _ in $(seq 600); do [ -f '\(metrics)' ] && break; sleep 0.2; done
            sleep 1
            for p in $(pgrep -f -- '\(Self.work)/ctrl-c'); do grep -hoE '/dev/shm/vader_segment\\.[^[:space:]]+' /proc/$p/maps; done 2>/dev/null | sort -u > '\(Self.work)/ctrl-c-during.txt'
            kill -INT -- -$pid
            wait $pid
            echo "script status $?"
            """
        let r = try runCommand("/bin/bash", ["-c", driver], timeout: 180)
        XCTAssertTrue(r.output.contains("interrupted (SIGINT)") && r.output.contains("script status 130"), r.output)
        // The segments the job's processes mapped (read from their /proc/PID/maps: other jobs' are not counted).
        let during = ((try? String(contentsOfFile: Self.work + "/ctrl-c-during.txt", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        XCTAssertFalse(during.isEmpty, "the job mapped no shared-memory segment to leave behind (OpenMPI's vader)")
        XCTAssertEqual(during.filter { FileManager.default.fileExists(atPath: $0) }, [], "shared-memory segments left behind by the interrupted job")
        let left = processes(naming: Self.work + "/ctrl-c")
        XCTAssertEqual(left, [], "processes of the job still run")
        for pid in left { kill(pid, SIGKILL) }
    }

    /// `Launch/pretrain --max-restarts` does not restart a job that failed before cladmop started the run (mpirun's
    /// own usage error here, a node it cannot reach): each restart failed alike, up to 999 times, and each was said to
    /// resume "from the newest valid checkpoint" of a run that did not exist (a probe of the scripts).
    func testTheSupervisorDoesNotRestartAJobThatNeverStarted() throws {
        let r = try runCommand(repositoryRoot + "/Launch/pretrain", ["-np", "2", "--max-restarts", "3", "--"] + Array(args("never-started").dropFirst()),
                               environment: ["MPI_FLAGS": "--no-such-mpirun-option"], timeout: 120)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("not restarted: the job failed with status") && r.output.contains("before cladmop started the run"), r.output)
        XCTAssertFalse(r.output.contains("restart 1 of 3"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.work + "/never-started/config.yaml"))
    }

    func testFullDiskWhileWritingACheckpointKeepsThePreviousOne() throws {
        let first = try mpirun(np: 2, executable: cladmop, arguments: args("full", steps: 4))
        XCTAssertEqual(first.status, 0, first.output)
        let dir = Self.work + "/full/checkpoints"
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/step-00000004.safetensors")[.size] as! Int
        // Every file may grow to half a checkpoint (RLIMIT_FSIZE): the step-8 checkpoint cannot be written.
        let r = try mpirun(np: 2, executable: cladmop, arguments: args("full", steps: 8, resume: true),
                           environment: ["CLADMOP_FAULT": "file_size_limit:\(size / 2)"], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)  // as every other output that cannot be written
        XCTAssertLessThan(r.seconds, 30)
        XCTAssertTrue(r.output.contains("writing checkpoint at step 8 failed") && r.output.contains("previous checkpoints are intact"), r.output)
        print("full disk: \(String(format: "%.1f", r.seconds)) s: " + (r.output.split(separator: "\n").first { $0.contains("writing checkpoint") } ?? ""))
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertEqual(left, ["best.json", "step-00000004.json", "step-00000004.safetensors"], "no partial file may be left behind")
        // With space again, the run resumes from step 4 and ends like a run that never failed.
        let again = try mpirun(np: 2, executable: cladmop, arguments: args("full", steps: 8, resume: true))
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("step-00000004.json (step 4"), again.output)
        let clean = try mpirun(np: 2, executable: cladmop, arguments: args("full-clean", steps: 8))
        XCTAssertEqual(clean.status, 0, clean.output)
        XCTAssertEqual(try parameters("full", step: 8), try parameters("full-clean", step: 8))
    }

    /// The same on a real full disk: a tmpfs with room for one and a half checkpoints (needs the right to mount,
    /// as root on the development machine and in CI's container; skipped, and said so, elsewhere).
    /// Outputs on a read-only file system are refused before any work, naming the reason: a store whose folder
    /// synth would create (it had encoded everything first and then said "No such file or directory"), evaluate's
    /// --plots and --json, and a pretraining run folder.
    func testReadOnlyFileSystemIsRefusedBeforeAnyWork() throws {
        let mountPoint = Self.work + "/readonly"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", mountPoint])
        guard mount.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mount.output)") }
        defer { _ = try? runCommand("/bin/umount", [mountPoint]) }
        let csv = repositoryRoot + "/data/top/toy_test.csv"
        for (args, expected) in [
            (["synth", "--trials", "50", "--output", mountPoint + "/sub/s.store", "--set", Self.hierarchy], "--output: cannot create \(mountPoint)/sub in the folder \(mountPoint)"),
            (["evaluate", "--checkpoint", Self.work + "/none", "--data", csv, "--plots", mountPoint + "/plots"], "--plots: cannot create"),
            (["evaluate", "--checkpoint", Self.work + "/none", "--data", csv, "--json", mountPoint + "/e.json"], "--json: cannot write in the folder \(mountPoint)"),
        ] {
            let r = try runProduct("cladmop", args, timeout: 60)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains(expected) && r.output.contains("Read-only file system"), r.output)
        }
        let run = try mpirun(np: 2, executable: cladmop, arguments: args(mountPoint + "/run", steps: 4), timeout: 60)
        XCTAssertEqual(run.status, 2, run.output)
        XCTAssertTrue(run.output.contains("Read-only file system"), run.output)
    }

    /// A run folder that cannot be created in an immutable folder (a stranger's probe): the system's reason, as for
    /// every other path, not Foundation's "You don't have permission. (NSCocoaErrorDomain 513)"; the folder above
    /// it too, named where it fails.
    func testARunFolderThatCannotBeCreatedSaysTheSystemsReason() throws {
        let locked = Self.work + "/immutable"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: true)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chattr") else { throw XCTSkip("no /usr/bin/chattr (Debian: e2fsprogs)") }
        let lock = try runCommand("/usr/bin/chattr", ["+i", locked])
        guard lock.status == 0 else { throw XCTSkip("chattr +i does not work here (needs root and ext4-like file systems): \(lock.output)") }
        defer { _ = try? runCommand("/usr/bin/chattr", ["-i", locked]) }
        for (runDir, expected) in [(locked + "/run", "\(locked)/run: cannot create the folder (--run-dir): Operation not permitted"),
                                   (locked + "/a/run", "cannot create the folder (--run-dir): Operation not permitted (creating \(locked)/a)")] {
            let r = try mpirun(np: 1, executable: cladmop, arguments: args(runDir, steps: 2), timeout: 60)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains(expected) && !r.output.contains("NSCocoaErrorDomain"), r.output)
        }
    }

    /// An mpirun stopped (SIGSTOP, a debugger attached to it) for longer than train.stall_timeout stops reading the
    /// ranks' terminals: rank 0 blocks writing a progress line and rank 1 waits for it in a collective. Waiting on
    /// output is not a stall: after SIGCONT the run goes on and ends as it would have (a stranger's probe: it had been
    /// ended as "rank 0 ... is stuck before collective N", exit 1, once mpirun ran again).
    func testAStoppedMpirunPausesTheRunInsteadOfEndingIt() throws {
        let run = Self.work + "/paused"
        let changed = ["train.epochs=20": "train.epochs=1000", "train.stall_timeout=8": "train.stall_timeout=5",
                       "checkpoint.every_steps=4": "checkpoint.every_steps=500"]
        let arguments = args(run, steps: 1500).map { changed[$0] ?? $0 } + ["--set", "train.log_every=1"]
        // Stopped for 20 s, four times the limit; the run must have stood still in it (rank 0 blocked: metrics.jsonl,
        // which rank 0 writes after each step's line, the same 8 s and 16 s into the stop), else the test proves nothing.
        let script = """
            mpirun -np 2 --oversubscribe $ROOT -x OPENBLAS_NUM_THREADS=1 "$@" > "$RUN.log" 2>&1 &
            p=$!
            for i in $(seq 600); do [ -f "$RUN/metrics.jsonl" ] && [ "$(wc -l < "$RUN/metrics.jsonl")" -ge 20 ] && break; sleep 0.1; done
            [ -f "$RUN/metrics.jsonl" ] && [ "$(wc -l < "$RUN/metrics.jsonl")" -ge 20 ] || { echo "the run did not start"; kill $p; exit 97; }
            kill -STOP $p; sleep 8; a=$(wc -l < "$RUN/metrics.jsonl"); sleep 8; b=$(wc -l < "$RUN/metrics.jsonl"); sleep 4; kill -CONT $p
            [ "$a" = "$b" ] || { echo "the run went on while mpirun was stopped ($a, then $b records): nothing was blocked"; wait $p; exit 98; }
            wait $p
            """
        let r = try runCommand("/bin/bash", ["-c", script, "stopped-mpirun", cladmop] + arguments,
                               environment: ["RUN": run, "ROOT": getuid() == 0 ? "--allow-run-as-root" : ""], timeout: 240)
        let log = (try? String(contentsOfFile: run + ".log", encoding: .utf8)) ?? ""
        XCTAssertEqual(r.status, 0, r.output + log)
        XCTAssertTrue(log.contains("pretrain: done, 1500 steps"), log)
    }

    /// An evaluation that another command writes at `evaluate --json`'s path while evaluate runs is kept: evaluate ends
    /// with exit 2 naming it, its own outputs not written (a session 50 probe: two `evaluate --json` to one path at
    /// once both exited 0, the first evaluation replaced by the second; the path is checked at the start, and was free
    /// then). Evaluate stops itself while scoring (CLADMOP_FAULT=stop:0:scoring); the other evaluation is copied in
    /// then. The control: the same stop with nothing copied writes the evaluation (exit 0).
    func testAnEvaluationWrittenMeanwhileAtTheSamePathIsKept() throws {
        let run = Self.work + "/kept-run"
        let pre = try mpirun(np: 1, executable: cladmop, arguments: args("kept-run", steps: 4))
        XCTAssertEqual(pre.status, 0, pre.output)
        let other = Self.work + "/kept-other.json"
        let first = try runProduct("cladmop", ["evaluate", "--checkpoint", run, "--data", Self.store, "--set", Self.hierarchy, "--json", other])
        XCTAssertEqual(first.status, 0, first.output)
        let otherBytes = try Data(contentsOf: URL(fileURLWithPath: other))
        for meanwhile in [true, false] {
            let out = Self.work + "/kept-\(meanwhile).json"
            let script = """
                CLADMOP_FAULT=stop:0:scoring "$CLADMOP" evaluate --checkpoint "$RUN" --data "$STORE" --set "$HIER" --json "$OUT" > "$OUT.log" 2>&1 &
                p=$!
                for i in $(seq 600); do [ "$(ps -o stat= -p $p | cut -c1)" = T ] && break; sleep 0.1; done
                [ "$(ps -o stat= -p $p | cut -c1)" = T ] || { echo "evaluate did not stop"; kill $p; wait $p; exit 97; }
                \(meanwhile ? "cp \"$OTHER\" \"$OUT\"" : "true")
                kill -CONT $p
                wait $p
                """
            let r = try runCommand("/bin/bash", ["-c", script], environment: ["CLADMOP": cladmop, "RUN": run, "STORE": Self.store, "HIER": Self.hierarchy,
                                                                           "OUT": out, "OTHER": other], timeout: 120)
            let log = (try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? ""
            if meanwhile {
                XCTAssertEqual(r.status, 2, r.output + log)
                XCTAssertTrue(log.contains("\(out): an evaluation (evaluate --json or baseline --json, by its keys) was written there by another command while this one ran"), log)
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), otherBytes, "the other command's evaluation is kept")
            } else {
                XCTAssertEqual(r.status, 0, r.output + log)
                XCTAssertTrue(FileManager.default.fileExists(atPath: out), log)
            }
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: Self.work).filter { $0.hasPrefix(".kept-") }
            XCTAssertEqual(leftovers, [], "no temporary file is left")
        }
        // What was there at the start and stays is no result written meanwhile: a link that leads to a run's eval.json
        // that does not exist is replaced by the evaluation (the run's folder gets nothing), as before (a review saw the
        // first form of this check refuse it once the whole evaluation was done).
        let link = Self.work + "/kept-link.json"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: run + "/eval.json")
        let linked = try runProduct("cladmop", ["evaluate", "--checkpoint", run, "--data", Self.store, "--set", Self.hierarchy, "--json", link])
        XCTAssertEqual(linked.status, 0, linked.output)
        XCTAssertFalse(isSymbolicLink(link), "the link is replaced")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/eval.json"), "the run's folder gets nothing")
    }

    /// A feature store truncated by another program while a command reads it through its memory map (a stranger's
    /// probe: `cp` over the store being scored) ended the process with SIGBUS (exit 135, a crash report). Now the read
    /// past the new end ends the job with exit 2 and a line naming the store, on one rank and under mpirun. The
    /// scoring rank stops itself (CLADMOP_FAULT=stop:R:scoring) after its first chunk; the store is cut to nothing
    /// while it is stopped; zero-shot retrieval then reads the store again. Under mpirun the rank calls MPI_Abort, as
    /// for any error (no mpirun kills the others under srun), so the job ends at once. A negative control: a SIGBUS
    /// sent by kill, which no read of a mapped file caused, still goes to the crash report (exit 135), not the message.
    func testAStoreTruncatedWhileReadEndsTheJobNamingIt() throws {
        let run = Self.work + "/shrink-run"
        let pre = try mpirun(np: 2, executable: cladmop, arguments: args("shrink-run", steps: 4))
        XCTAssertEqual(pre.status, 0, pre.output)
        for (np, act) in [(1, "truncate"), (2, "truncate"), (1, "kill -BUS")] {
            let store = Self.work + "/shrink-\(np).store"
            try? FileManager.default.removeItem(atPath: store)
            try FileManager.default.copyItem(atPath: Self.store, toPath: store)
            let launch = np == 1 ? "CLADMOP_FAULT=stop:0:scoring \"$CLADMOP\"" : "CLADMOP_FAULT=stop:1:scoring mpirun -np 2 --oversubscribe $ROOT -x CLADMOP_FAULT \"$CLADMOP\""
            let script = """
                \(launch) evaluate --checkpoint "$RUN" --data "$STORE" --set "$HIER" > "$STORE.log" 2>&1 &
                p=$!
                ranks() { \(np == 1 ? "echo $p" : "pgrep -P $p -x cladmop"); }     # mpirun's children: this job's ranks only
                stopped() { for r in $(ranks); do [ "$(ps -o stat= -p $r | cut -c1)" = T ] && return 0; done; return 1; }
                for i in $(seq 600); do stopped && break; sleep 0.1; done
                stopped || { echo "no rank stopped"; kill $p; wait $p; exit 97; }
                \(act == "truncate" ? "truncate -s 0 \"$STORE\"" : "for r in $(ranks); do kill -BUS $r; done")
                for r in $(ranks); do kill -CONT $r; done
                wait $p
                """
            let r = try runCommand("/bin/bash", ["-c", script], environment: ["CLADMOP": cladmop, "RUN": run, "STORE": store, "HIER": Self.hierarchy,
                                                                           "ROOT": getuid() == 0 ? "--allow-run-as-root" : ""], timeout: 120)
            let log = (try? String(contentsOfFile: store + ".log", encoding: .utf8)) ?? ""
            if act != "truncate" {
                XCTAssertEqual(r.status, 135, "a SIGBUS by kill: " + r.output + log)
                XCTAssertTrue(log.contains("Program crashed: Bus error") && !log.contains("memory map"), log)
                continue
            }
            XCTAssertEqual(r.status, 2, "\(np) rank(s): " + r.output + log)
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: Self.store)[.size] as? Int)
            // Under mpirun the rank that reads first after the stop says it (rank 0 may, while rank 1 catches up).
            XCTAssertTrue(log.contains("\(np == 1 ? "error" : " of 2)"): \(store): the file shrank from \(size) to 0 bytes while this process read it through its memory map"), log)
            XCTAssertFalse(log.contains("Program crashed") || log.contains("Bus error"), log)
            XCTAssertLessThan(r.seconds, 60, "the job ends at once, not at the watchdog's limit")
        }
    }

    func testFullTmpfsWhileWritingACheckpointKeepsThePreviousOne() throws {
        let first = try mpirun(np: 2, executable: cladmop, arguments: args("tmpfs-src", steps: 4))
        XCTAssertEqual(first.status, 0, first.output)
        let size = try FileManager.default.attributesOfItem(atPath: Self.work + "/tmpfs-src/checkpoints/step-00000004.safetensors")[.size] as! Int
        let mountPoint = Self.work + "/tmpfs"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size * 3 / 2 + 65536)", "tmpfs", mountPoint])
        guard mount.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mount.output)") }
        defer { _ = try? runCommand("/bin/umount", [mountPoint]) }
        try FileManager.default.copyItem(atPath: Self.work + "/tmpfs-src", toPath: mountPoint + "/full")
        let r = try mpirun(np: 2, executable: cladmop, arguments: args(mountPoint + "/full", steps: 8, resume: true), timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)  // as every other output that cannot be written
        XCTAssertLessThan(r.seconds, 30)
        XCTAssertTrue(r.output.contains("writing checkpoint at step 8 failed") && r.output.contains("No space left on device"), r.output)
        print("full tmpfs: \(String(format: "%.1f", r.seconds)) s: " + (r.output.split(separator: "\n").first { $0.contains("writing checkpoint") } ?? ""))
        let left = try FileManager.default.contentsOfDirectory(atPath: mountPoint + "/full/checkpoints").sorted()
        XCTAssertEqual(left, ["best.json", "step-00000004.json", "step-00000004.safetensors"], "no partial file may be left behind")
        XCTAssertEqual(try SafetensorsFile(path: mountPoint + "/full/checkpoints/step-00000004.safetensors").tensors.count,
                       try SafetensorsFile(path: Self.work + "/tmpfs-src/checkpoints/step-00000004.safetensors").tensors.count)
    }

    /// SIGTERM while a command writes its output (synth's store, under its hidden temporary name) removes the
    /// temporary file: nothing is left beside the output, which is not written (it had been left, 86 MB here); a line
    /// on standard error names the file removed.
    func testInterruptedWriteLeavesNoTemporaryFile() throws {
        let dir = Self.work + "/interrupted-write"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var stopped = 0
        for _ in 0..<3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: cladmop)
            process.arguments = ["synth", "--trials", "20000", "--dim", "32", "--output", dir + "/s.store", "--set", Self.hierarchy]
            process.standardOutput = FileHandle.nullDevice
            let errors = Pipe()
            process.standardError = errors
            try process.run()
            let deadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < deadline {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                if names.contains(where: { $0.contains(".tmp-") }) { kill(process.processIdentifier, SIGTERM); stopped += 1; break }
                usleep(1000)
            }
            process.waitUntilExit()
            let left = try FileManager.default.contentsOfDirectory(atPath: dir)
            if process.terminationReason == .uncaughtSignal {
                XCTAssertEqual(process.terminationStatus, SIGTERM)
                XCTAssertEqual(left, [], "a write ended by SIGTERM leaves nothing")
                let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                XCTAssertTrue(said.contains("interrupted (SIGTERM); removed the unfinished \(dir)/.s.store.tmp-"), "it says why it stopped: \(said)")
            }
            for name in left { try FileManager.default.removeItem(atPath: dir + "/" + name) }
        }
        XCTAssertGreaterThan(stopped, 0, "the temporary file was never seen: nothing was interrupted")
    }

    /// A write ended by SIGKILL (no handler runs) leaves its temporary file; the next write of the same output removes
    /// it (a fifteenth probe: synth's and featurize's were left for good, 255 MB for the bundled store), and keeps one
    /// of a process that still runs, and one written less than a minute ago.
    func testTheNextWriteRemovesATemporaryFileAKilledWriteLeft() throws {
        let dir = Self.work + "/killed-write"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let synth = ["synth", "--trials", "300", "--dim", "16", "--output", dir + "/s.store", "--set", Self.hierarchy]
        let ended = Process()
        ended.executableURL = URL(fileURLWithPath: "/bin/true")
        try ended.run(); ended.waitUntilExit()
        let stale = dir + "/.s.store.tmp-\(ended.processIdentifier)", live = dir + "/.s.store.tmp-\(getpid())"
        let young = dir + "/.s.store.tmp-\(ended.processIdentifier + 100_000_000)"     // no such process, but written just now
        for path in [stale, live, young] {
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: 4096)))
            if path != young { try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-120)], ofItemAtPath: path) }
        }
        let r = try runProduct("cladmop", synth)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                       [live, young].map { URL(fileURLWithPath: $0).lastPathComponent }.sorted() + ["s.store"])
        // One left beside a store that nothing writes again (a session 50 probe: a rerun within the minute wrote the
        // store, and every later command only read it): a command that reads the store removes it, on the same terms
        // but an hour old (a reader elsewhere must not take a featurize's temporary between two of its waves).
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-1800)], ofItemAtPath: young)
        let keptRead = try runProduct("cladmop", ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir + "/run0",
                                                  "--set", "data.synthetic=true", "--set", "data.feature_store=\(dir)/s.store", "--set", Self.hierarchy,
                                                  "--set", "train.max_steps=1"])
        XCTAssertEqual(keptRead.status, 0, keptRead.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: young), "half an hour old: kept by a reader")
        XCTAssertNil(removeTree(dir + "/run0"))
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: young)
        let read = try runProduct("cladmop", ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir + "/run",
                                              "--set", "data.synthetic=true", "--set", "data.feature_store=\(dir)/s.store", "--set", Self.hierarchy,
                                              "--set", "train.max_steps=1"])
        XCTAssertEqual(read.status, 0, read.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                       [URL(fileURLWithPath: live).lastPathComponent, "run", "s.store"].sorted())
    }

    /// Two splits at once onto the same outputs: one writes both halves, the other is refused (exit 2) and writes
    /// neither, so the halves always come from one split (both had succeeded, leaving halves that shared trials).
    func testTwoSplitsAtOnceLeaveOnePair() throws {
        let dir = Self.work + "/splits"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let data = repositoryRoot + "/data/top/phase_I_train.csv"
        for round in 0..<4 {
            for name in ["a.csv", "b.csv"] { try? FileManager.default.removeItem(atPath: dir + "/" + name) }
            let runs = ["0.8", "0.3"].map { fraction -> Process in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: cladmop)
                p.arguments = ["split", "--data", data, "--fraction", fraction, "--train", dir + "/a.csv", "--valid", dir + "/b.csv"]
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                return p
            }
            for p in runs { try p.run() }
            for p in runs { p.waitUntilExit() }
            let statuses = runs.map(\.terminationStatus).sorted()
            XCTAssertEqual(statuses, [0, 2], "round \(round): exit statuses \(statuses)")
            let rows = try ["a.csv", "b.csv"].map { try readCSV(path: dir + "/" + $0).count - 1 }
            XCTAssertEqual(rows[0] + rows[1], 1044, "round \(round): the halves of one split (\(rows))")
            XCTAssertTrue(rows == [835, 209] || rows == [313, 731], "round \(round): \(rows)")
        }
    }
}
