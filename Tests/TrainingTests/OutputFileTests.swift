import Foundation
import XCTest
import Communication
import Config
import Reporting
@testable import Support
@testable import Training

/// How outputs are written (Support/Files.swift) and how --overwrite clears a run folder (RunFolder.swift), against
/// the cases a stranger's probe (session 36) found: two long output names that shared one temporary file, devices and
/// FIFOs replaced by an output, a previous run half-deleted by a removal that failed part-way.
final class OutputFileTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-outputs-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        for path in [dir] + ((try? FileManager.default.subpathsOfDirectory(atPath: dir)) ?? []).map({ dir + "/" + $0 }) {
            _ = try? Process.run(URL(fileURLWithPath: "/usr/bin/chattr"), arguments: ["-i", path]).waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A split's two halves under names alike in their first 245 bytes: each had the temporary ".NAME.tmp-PID" cut to
    /// the same 255 bytes, so the second half was written over the first and both names linked to it (exit 0).
    func testLongNamesAlikeInTheirStartGetTheirOwnTemporaries() throws {
        let stem = "phase_I_earliest_trials_" + String(repeating: "z", count: 221)
        let train = dir + "/" + stem + ".train.csv", valid = dir + "/" + stem + ".valid.csv"
        let a = temporaryPath(for: train), b = temporaryPath(for: valid)
        XCTAssertNotEqual(a, b)
        for t in [a, b] {
            let name = URL(fileURLWithPath: t).lastPathComponent
            XCTAssertLessThanOrEqual(name.utf8.count, 255, name)
            XCTAssertTrue(name.hasPrefix(".phase_I_earliest_trials_zzz") && name.hasSuffix(".tmp-\(getpid())"), name)
        }
        // A name with room for the suffix keeps the plain form (cleanups look for it).
        XCTAssertEqual(temporaryPath(for: dir + "/eval.json"), dir + "/.eval.json.tmp-\(getpid())")
        try writeNewFilesTogether([(train, Data("train rows\n".utf8)), (valid, Data("valid rows\n".utf8))])
        XCTAssertEqual(try String(contentsOfFile: train, encoding: .utf8), "train rows\n")
        XCTAssertEqual(try String(contentsOfFile: valid, encoding: .utf8), "valid rows\n")
        var st = stat(), other = stat()
        XCTAssertEqual(stat(train, &st), 0); XCTAssertEqual(stat(valid, &other), 0)
        XCTAssertNotEqual(st.st_ino, other.st_ino, "the two halves are one file")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).count, 2, "a temporary file left")
    }

    /// Outputs written as one group (evaluate's --json, --report and --plots) appear together or not at all: a write
    /// that fails leaves every earlier file as it was and no temporary (a stranger's probe: evaluate on a full disk
    /// had left new curves beside the earlier, or no, evaluation); a group given up without its commit writes nothing.
    func testAGroupOfOutputsAppearsTogetherOrNotAtAll() throws {
        try Data("earlier roc".utf8).write(to: URL(fileURLWithPath: dir + "/roc.svg"))
        struct DiskFull: Error {}
        let group = OutputGroup()
        let tmp = try group.write(dir + "/roc.svg") { try $0.write(contentsOf: Data("<svg/>".utf8)) }
        XCTAssertEqual(try String(contentsOfFile: tmp, encoding: .utf8), "<svg/>", "readable before the commit")
        XCTAssertThrowsError(try group.write(dir + "/e.json") { try $0.write(contentsOf: Data("{".utf8)); throw DiskFull() }) {
            XCTAssertTrue("\($0)".contains("e.json: write failed"), "\($0)")
        }
        group.discard()
        XCTAssertEqual(try String(contentsOfFile: dir + "/roc.svg", encoding: .utf8), "earlier roc")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["roc.svg"], "no temporary file left")
        do {
            let dropped = OutputGroup()
            try dropped.write(dir + "/pr.svg") { try $0.write(contentsOf: Data("<svg/>".utf8)) }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["roc.svg"], "a group without its commit writes nothing")
        let both = OutputGroup()
        try both.write(dir + "/roc.svg") { try $0.write(contentsOf: Data("new roc".utf8)) }
        try both.write(dir + "/e.json") { try $0.write(contentsOf: Data("{}".utf8)) }
        try both.removeAtCommit(dir + "/roc.png")
        try both.commit()
        XCTAssertEqual(try String(contentsOfFile: dir + "/roc.svg", encoding: .utf8), "new roc")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["e.json", "roc.svg"])
        // Two outputs that are one file (links to one target, as a review found with sweep-report's sweep.csv and
        // summary.md) would share a temporary file: the second is refused and nothing is written.
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/x.txt"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/a.csv", withDestinationPath: "x.txt")
        try FileManager.default.createSymbolicLink(atPath: dir + "/b.md", withDestinationPath: dir + "/x.txt")
        /// A group writing `first`, then `second` (refused: the same file as `first`), then given up.
        func refusesTheSecond(_ first: String, _ second: String) throws {
            let group = OutputGroup()
            try group.write(dir + "/" + first) { try $0.write(contentsOf: Data("new".utf8)) }
            XCTAssertThrowsError(try group.write(dir + "/" + second) { try $0.write(contentsOf: Data("new".utf8)) }) {
                XCTAssertTrue("\($0)".contains("\(second): is the same file as \(self.dir)/\(first)"), "\($0)")
            }
            group.discard()
        }
        try refusesTheSecond("a.csv", "b.md")
        XCTAssertEqual(try String(contentsOfFile: dir + "/x.txt", encoding: .utf8), "x")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["a.csv", "b.md", "e.json", "roc.svg", "x.txt"])
        // Hard links of one file (--json A --report B, B a hard link of A: a stranger's probe, session 40) likewise.
        XCTAssertEqual(link(dir + "/e.json", dir + "/r.md"), 0)
        try refusesTheSecond("e.json", "r.md")
        XCTAssertEqual(try String(contentsOfFile: dir + "/r.md", encoding: .utf8), "{}")
    }

    /// An input read is protected under every name of its file (here a hard link), but once no name it was read under
    /// leads to that file (the input deleted, as another test of this process does with its files), its inode is
    /// another file's: a CI run failed when an output's new file had the inode of a model another test had read.
    func testAnInputDeletedSinceItWasReadIsNoLongerProtected() throws {
        let input = dir + "/model.safetensors", other = dir + "/roc.svg"
        try Data("weights".utf8).write(to: URL(fileURLWithPath: input))
        _ = try MappedFile(path: input)
        XCTAssertEqual(link(input, other), 0)
        XCTAssertThrowsError(try writeTextFile(other, "<svg/>")) { XCTAssertTrue("\($0)".contains("is the input \(input)"), "\($0)") }
        XCTAssertEqual(unlink(input), 0)
        try writeTextFile(other, "<svg/>")
        XCTAssertEqual(try String(contentsOfFile: other, encoding: .utf8), "<svg/>")
        // Read again under its new name (a store rebuilt over the file with the reused inode): a new entry, not one
        // merged with the gone input's (which had named the model and refused the store's own rebuild).
        let store = dir + "/features.store", model = dir + "/model2.safetensors"
        try Data("weights".utf8).write(to: URL(fileURLWithPath: model))
        _ = try MappedFile(path: model)
        XCTAssertEqual(link(model, store), 0); XCTAssertEqual(unlink(model), 0)
        _ = try MappedFile(path: store, readAs: "feature store")
        XCTAssertEqual(FilesRead.read(at: store)?.path, store)
        XCTAssertEqual(FilesRead.read(at: store)?.readAs, ["feature store"])
    }

    /// An output at a FIFO (or a device), or at a link to one, is refused and the node stays; a rename had turned it
    /// into a regular file (evaluate --plots, sweep-report). Shown with FIFOs: a regression must not replace /dev/null.
    func testOutputsDoNotReplaceFIFOsOrDevices() throws {
        let fifo = dir + "/roc.svg", link = dir + "/pr.svg", png = dir + "/sweep.png"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0); XCTAssertEqual(mkfifo(png, 0o644), 0)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: fifo)
        func isFIFO(_ path: String) -> Bool { var st = stat(); return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO }
        // Files other tests of this process read and removed may have left their inodes to these: not inputs here.
        for path in [fifo, png] { FilesRead.forget(path) }
        XCTAssertThrowsError(try writeTextFile(fifo, "<svg/>")) { XCTAssertTrue("\($0)".contains("roc.svg: is a FIFO"), "\($0)") }
        XCTAssertThrowsError(try writeTextFile(link, "<svg/>")) { XCTAssertTrue("\($0)".contains("pr.svg: leads to \(fifo), a FIFO"), "\($0)") }
        // writePlot's PNG beside its SVG: refused before the SVG is written.
        XCTAssertThrowsError(try writePlot(dir + "/sweep.svg", "<svg/>")) { XCTAssertTrue("\($0)".contains("sweep.png: is a FIFO"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/sweep.svg"))
        XCTAssertTrue(isFIFO(fifo) && isFIFO(png))
        var st = stat()
        XCTAssertEqual(lstat(link, &st), 0); XCTAssertEqual(st.st_mode & S_IFMT, S_IFLNK)
        // A regular file, a link to one, and nothing there are written as before.
        try writeTextFile(dir + "/new.md", "a")
        FilesRead.forget(dir + "/new.md")
        try FileManager.default.createSymbolicLink(atPath: dir + "/to-new.md", withDestinationPath: dir + "/new.md")
        try writeTextFile(dir + "/to-new.md", "b")
        XCTAssertEqual(try String(contentsOfFile: dir + "/new.md", encoding: .utf8), "b")
    }

    /// --overwrite renames the previous run's files aside together before removing them, and leaves other files. A
    /// removal that fails (an immutable folder deep in a member's checkpoints) used to stop half-way with the run's
    /// best.json and config.yaml gone and its checkpoints left under the run's own names.
    func testOverwriteMovesThePreviousRunAsideBeforeRemovingIt() throws {
        let fm = FileManager.default
        func make(_ run: String) throws {
            try fm.createDirectory(atPath: run + "/members/2/checkpoints", withIntermediateDirectories: true)
            for f in ["best.json", "config.yaml", "folds.csv", "members/2/best.json", "members/2/checkpoints/step-1.json", "notes.txt"] {
                try Data(f.utf8).write(to: URL(fileURLWithPath: run + "/" + f))
            }
        }
        let run = dir + "/ft"
        try make(run)
        // What an earlier --overwrite, killed while it removed, left: removed too.
        try fm.createDirectory(atPath: run + "/.overwritten-999999999-members/0", withIntermediateDirectories: true)
        try removePreviousRun(run, artifacts: finetuneArtifacts)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: run), ["notes.txt"], "the run's files gone, a file of the user's kept, nothing aside")
        // Also by a command that resumes or starts a run there (a probe: a killed --overwrite's 100 MB stayed through
        // a resume until the next --overwrite).
        try fm.createDirectory(atPath: run + "/.overwritten-999999998-checkpoints/x", withIntermediateDirectories: true)
        // One of a process that still runs (another --overwrite on a file system without locks) is left to it.
        let live = ".overwritten-\(getppid())-checkpoints"
        try fm.createDirectory(atPath: run + "/" + live, withIntermediateDirectories: true)
        try prepareRunDirectory(run, config: try Config(file: nil), comm: SingleProcessCommunicator(), resume: true)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: run).sorted(), [live, "config.yaml", "notes.txt"])

        // A folder that cannot be removed: the run's names are all free, what remains is in the hidden folder.
        let stuck = dir + "/stuck"
        try make(stuck)
        let chattr = try Process.run(URL(fileURLWithPath: "/usr/bin/chattr"), arguments: ["+i", stuck + "/members/2/checkpoints"])
        chattr.waitUntilExit()
        try XCTSkipIf(chattr.terminationStatus != 0 || unlinkWorks(stuck + "/members/2/checkpoints"),
                      "chattr +i does not hold on this file system")
        try removePreviousRun(stuck, artifacts: finetuneArtifacts)
        let left = try fm.contentsOfDirectory(atPath: stuck).sorted()
        XCTAssertEqual(left, [".overwritten-\(getpid())-members", "notes.txt"], "the run's names all free, the removable files removed")
        XCTAssertTrue(fm.fileExists(atPath: stuck + "/" + left[0] + "/2/checkpoints/step-1.json"))
    }

    /// --overwrite's renames run with SIGINT, SIGTERM and SIGHUP held (`holdingSignals`): a signal that comes meanwhile
    /// is returned once the step is done, for the renames to be undone (a Ctrl-C had left half a run renamed aside,
    /// exit 130 without a word); outside the step the handler is as before. (The whole path, a finetune --overwrite
    /// interrupted between two renames slowed by strace, was checked by hand: the run left whole, the line said.)
    func testSignalsAreHeldForAStepThatMustHappenWhole() {
        TemporaryFiles.installSignalHandlers()
        var steps = 0
        let held = TemporaryFiles.holdingSignals {
            steps += 1
            raise(SIGHUP)     // handled: recorded, not acted on
            steps += 1
        }
        XCTAssertEqual(held, SIGHUP); XCTAssertEqual(steps, 2, "the step ran to its end")
        XCTAssertEqual(TemporaryFiles.holdingSignals { steps += 1 }, 0, "no signal: none returned")
        // Nested: the outer step keeps holding and returns the signal.
        let outer = TemporaryFiles.holdingSignals {
            XCTAssertEqual(TemporaryFiles.holdingSignals { raise(SIGHUP) }, 0, "the inner step leaves it to the outer")
            steps += 1
        }
        XCTAssertEqual(outer, SIGHUP); XCTAssertEqual(steps, 4)
    }

    /// A group's renames are one such step: a signal between two (the probe's `strace -e inject=rename:signal=SIGTERM`
    /// on evaluate had left roc.svg without e.json and report.md) is returned after the last, for `commit` to end by.
    func testASignalBetweenAGroupsRenamesComesAfterTheLast() throws {
        TemporaryFiles.installSignalHandlers()
        let group = OutputGroup()
        for name in ["roc.svg", "e.json", "r.md"] { try group.write(dir + "/" + name) { try $0.write(contentsOf: Data(name.utf8)) } }
        var renamed = 0
        group.afterRename = { renamed += 1; if renamed == 1 { raise(SIGTERM) } }
        XCTAssertEqual(try group.commitHoldingSignals(), SIGTERM)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["e.json", "r.md", "roc.svg"])
    }

    /// Whether a file can be made and removed in `folder` (false under chattr +i).
    private func unlinkWorks(_ folder: String) -> Bool {
        let probe = folder + "/.probe"
        guard FileManager.default.createFile(atPath: probe, contents: nil) else { return false }
        return unlink(probe) == 0
    }
}

/// Checkpoint retention (`checkpoint.keep_last`, `Checkpoints.prune`) after a resume that skipped a damaged newer
/// checkpoint (a crash-consistency review): that checkpoint had counted among the newest, so with keep_last 1 the
/// checkpoint just written was deleted at once and nothing was left to resume from.
final class CheckpointRetentionTests: XCTestCase {
    func testPruningCountsOnlyCheckpointsUpToTheStepJustWritten() throws {
        let dir = NSTemporaryDirectory() + "cladmop-prune-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Steps 10 and 20 written by the run; 30 a damaged one from before the resume; 20 just written.
        for step in [10, 20, 30] {
            for ext in [".json", ".safetensors"] {
                XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + Checkpoints.name(step: step) + ext, contents: Data("x".utf8)))
            }
        }
        Checkpoints.prune(dir: dir, keep: 1, protected: nil, upTo: 20)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertEqual(left, ["step-00000020.json", "step-00000020.safetensors", "step-00000030.json", "step-00000030.safetensors"],
                       "the checkpoint just written is kept, the later damaged one neither counts nor goes")
        // Steps past 99,999,999 (9 digits) order after 8-digit ones.
        for ext in [".json", ".safetensors"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + Checkpoints.name(step: 100_000_000) + ext, contents: Data("x".utf8)))
        }
        Checkpoints.prune(dir: dir, keep: 1, protected: nil, upTo: 100_000_000)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["step-100000000.json", "step-100000000.safetensors"])
    }

    /// A kill between the two unlinks of a pruned checkpoint (JSON first) left its tensors file for ever (a stranger's
    /// probe): the next pruning removes a tensors file without its JSON of an earlier step, never one of the step just
    /// written or later, nor other files.
    func testPruningRemovesTensorsFilesLeftWithoutTheirJSON() throws {
        let dir = NSTemporaryDirectory() + "cladmop-prune-orphans-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func make(_ file: String) { XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + file, contents: Data("x".utf8))) }
        for step in [10, 30] { make(Checkpoints.name(step: step) + ".json"); make(Checkpoints.name(step: step) + ".safetensors") }
        make(Checkpoints.name(step: 5) + ".safetensors")       // pruned earlier, killed between the unlinks
        make(Checkpoints.name(step: 20) + ".safetensors")      // the step being written (its JSON not yet renamed)
        make(Checkpoints.name(step: 40) + ".safetensors")      // later than the step just written
        make("notes.safetensors")
        make("step-best.safetensors")                          // a user's file of a name this code never writes
        make("step-1.safetensors")
        Checkpoints.prune(dir: dir, keep: 5, protected: nil, upTo: 20)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                       ["notes.safetensors", "step-00000010.json", "step-00000010.safetensors", "step-00000020.safetensors",
                        "step-00000030.json", "step-00000030.safetensors", "step-00000040.safetensors", "step-1.safetensors", "step-best.safetensors"])
    }
}
