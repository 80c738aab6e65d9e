import Communication
import Config
import Foundation
import Support

// Run folders: what a run directory may hold, the checks before a command writes one, and the locks that keep two
// commands from writing (or one from replacing what another reads) at once. Every command that writes a run goes
// through `checkRunDirectory` (before any work) and `prepareRunDirectory` (once its inputs are read).

/// Descriptors of the run folders this process holds (`lockRunFolder`), and whether exclusively (also where the file
/// system has no locks: the folder is then held without one).
nonisolated(unsafe) private var heldRunDirectories: [(fd: Int32, exclusive: Bool)] = []

/// Takes a lock on a run folder (flock on its descriptor, held until the process ends, also by a crash): exclusive
/// for a command that writes a run (`prepareRunDirectory`), shared for one that writes results into a run it reads
/// (evaluate's --json, --report, --plots in the run it scores: several may, but no command replaces the run
/// meanwhile); `busy` is the error when another command holds a lock that conflicts. Called on rank 0 only.
public func lockRunFolder(_ dir: String, exclusive: Bool = true, busy: String) throws {
    // Close-on-exec: a helper the process starts (the watchdog's) must not inherit, and so outlive, the lock.
    let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw InputError(file: dir, "cannot open the run folder: \(String(cString: strerror(errno)))") }
    // Held already by this process as this lock or a stronger one (a resumed run locks before its first write, then
    // prepareRunDirectory): a second flock on another descriptor would conflict with it.
    var st = stat(), other = stat()
    if fstat(fd, &st) == 0, heldRunDirectories.contains(where: {
        ($0.exclusive || !exclusive) && fstat($0.fd, &other) == 0 && other.st_dev == st.st_dev && other.st_ino == st.st_ino }) {
        close(fd)
        return
    }
    if flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 {
        heldRunDirectories.append((fd, exclusive))     // kept open (and locked) until the process ends
        if exclusive { WrittenFolders.hold(dir, descriptor: fd) }
    } else if errno == EWOULDBLOCK {
        close(fd)
        throw InputError(file: dir, busy)
    } else {
        // A file system without locks (some network mounts): go on as before there was a lock, the folder held (once)
        // all the same, so that one replacing it is told apart.
        let reason = String(cString: strerror(errno))
        heldRunDirectories.append((fd, exclusive))
        if exclusive { WrittenFolders.hold(dir, descriptor: fd) }
        standardErrorWrite(Data("warning: \(dir): cannot lock the run folder (\(reason)); two commands on it would not be told apart\n".utf8))
    }
}

/// The exclusive lock of a command that writes the run in `runDir` (rank 0; a second call returns).
public func lockRunForWriting(_ runDir: String) throws {
    try lockRunFolder(runDir, busy: "another cladmop command is writing a run in this folder; wait for it or choose another --run-dir")
}

/// Refuses a run folder another command holds locked (a pretraining run still training: the checkpoint its best.json
/// names is replaced and pruned under a reader). A checkpoint named by its own file is read as it is.
public func requireRunFolderIdle(_ dir: String, option: String) throws {
    let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    defer { close(fd) }
    if flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK {
        throw InputError(file: dir, "\(option): another cladmop command is writing this run (a pretraining run that has not ended?); its best checkpoint changes and older ones are pruned: wait for it to end, or name one of its checkpoint files")
    }
    flock(fd, LOCK_UN)
}

/// What a run directory holds: files whose presence means a run was written there.
public let runArtifacts = RunLayout.artifacts
/// A fine-tuning run's as well: its kept pretrained checkpoint (`Checkpoints.keepPretrained`); not a pretraining run's,
/// where a folder of that name is the user's.
public let finetuneArtifacts = runArtifacts + ["pretrained"]

/// Refuses, before anything is read or written, a run directory that is not a folder or that already holds a
/// run which this command neither continues (`resume`) nor replaces (`overwrite`), and with `overwrite` an input
/// (`inputs`: what names it, its path) inside what the overwrite deletes (a previous run's members/ or checkpoints/:
/// it would be read and then removed). Rank 0 checks; an error there ends the job on every rank.
public func checkRunDirectory(_ runDir: String, comm: Communicator, resume: Bool = false, overwrite: Bool = false, artifacts: [String] = runArtifacts,
                       inputs: [(option: String, path: String)] = [],
                       hint: String = "continue it with --resume auto, replace it with --overwrite, or choose another --run-dir") throws {
    guard comm.isRoot else { return }
    // Its config.yaml, checkpoints/ and (with --overwrite) deletions would go to the top of the file system.
    guard resolvedPath(runDir) != "/" else { throw InputError(file: runDir, "--run-dir names the root folder /; expected a folder for the run") }
    // Inside another run's own folders (checkpoints/, members/, pretrained/), which that run prunes and its --overwrite
    // deletes: this run would go with them.
    var above = URL(fileURLWithPath: resolvedPath(runDir))
    while above.path != "/" {
        let owner = above.deletingLastPathComponent()
        if ["checkpoints", "members", "pretrained"].contains(above.lastPathComponent) && RunLayout.isRun(owner.path) {
            throw InputError(file: runDir, "--run-dir lies inside \(above.path), a folder of the run in \(owner.path), which that run prunes and its --overwrite deletes; choose a folder outside it")
        }
        above = owner
    }
    var st = stat()
    guard stat(runDir, &st) == 0 else {     // a new folder (a link to a missing one is named before any work)
        var lst = stat()
        if lstat(runDir, &lst) == 0 && (lst.st_mode & S_IFMT) == S_IFLNK { try makeDirectory(runDir, option: "--run-dir") }
        try checkNameLengths(runDir, option: "--run-dir")
        return
    }
    guard (st.st_mode & S_IFMT) == S_IFDIR else { throw InputError(file: runDir, "--run-dir names an existing file, not a folder") }
    // A folder of the run (checkpoints/, members/) that is a link into another run (to that run's folder, to one of
    // its folders, or inside its checkpoints/, members/, pretrained/): this run would prune and replace that run's
    // checkpoints, also while it trains (a probe's second job did, through a checkpoints/ linked to a running run's).
    // A link elsewhere (checkpoints/ on a larger disk) is the user's choice; a linked file (a `cp -rs` copy of a run)
    // is replaced by this run's own on its first write (metrics.jsonl is copied before a resumed run appends).
    let own = resolvedPath(runDir)
    // A run folder that is a link to a folder that does not exist (a disk not mounted): named now, not when the first
    // checkpoint is written after the training it would lose.
    for name in ["checkpoints", "members"] where artifacts.contains(name) {
        var lst = stat(), target = stat()
        if lstat(runDir + "/" + name, &lst) == 0, (lst.st_mode & S_IFMT) == S_IFLNK, stat(runDir + "/" + name, &target) != 0 {
            throw InputError(file: runDir + "/" + name, "is a link to \((try? FileManager.default.destinationOfSymbolicLink(atPath: runDir + "/" + name)) ?? "?"), "
                             + "which does not exist (a disk not mounted?); mount or make it, or remove the link")
        }
    }
    for name in artifacts {
        var lst = stat(), linked = stat()
        guard lstat(runDir + "/" + name, &lst) == 0, (lst.st_mode & S_IFMT) == S_IFLNK,
              stat(runDir + "/" + name, &linked) == 0, (linked.st_mode & S_IFMT) == S_IFDIR else { continue }
        let target = URL(fileURLWithPath: resolvedPath(runDir + "/" + name))
        if let other = runOwning(target, except: own) {
            throw InputError(file: runDir + "/" + name, "is a link to \(target.path), \(other == target.path ? "the run folder" : "a part of the run in") \(other); this run "
                             + "would prune and replace that run's checkpoints: a run's folders are its own (copy them, `cp -r`, instead of linking)")
        }
    }
    // Loose checkpoint files at the top: a checkpoints/ folder or a fine-tuned run's pretrained/, not a run folder (a
    // run there would start from scratch beside them).
    let loose = ((try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []).filter(RunLayout.isCheckpointMetadata).sorted()
    if let first = loose.first, !FileManager.default.fileExists(atPath: runDir + "/checkpoints") {
        throw InputError(file: runDir, "holds checkpoint files at its top (\(first)): a checkpoints/ folder or a fine-tuned run's pretrained/, not a run folder; --run-dir names the folder above, or a new one")
    }
    // A batch-size sweep's folder (Launch/sweep-batch DIR): its points' runs are in DIR/runs/, its report at the top.
    if FileManager.default.fileExists(atPath: runDir + "/points.tsv") && FileManager.default.fileExists(atPath: runDir + "/runs") {
        throw InputError(file: runDir, "holds a batch-size sweep (points.tsv, runs/); a run goes into a folder of its own: choose another --run-dir")
    }
    let present = artifacts.filter { FileManager.default.fileExists(atPath: runDir + "/" + $0) }
    // A run writes its config.yaml first (prepareRunDirectory) and --overwrite moves it aside last: run entries without
    // it, or beside a config.yaml that no run wrote, are not a run of ours (another program's, or the user's own files).
    let foreignConfig = present.contains("config.yaml") && !holdsRunConfig(runDir)
    let withoutConfig = !present.isEmpty && !present.contains("config.yaml")
    // What --resume auto would write over without a run's config.yaml: the folder's own entries (a link is the user's
    // pointer elsewhere: a `cp -rs` copy, checkpoints/ on a larger disk) that hold something.
    let ownEntries = present.filter { name in
        var lst = stat()
        guard lstat(runDir + "/" + name, &lst) == 0, (lst.st_mode & S_IFMT) != S_IFLNK else { return false }
        return (lst.st_mode & S_IFMT) != S_IFDIR || !((try? FileManager.default.contentsOfDirectory(atPath: runDir + "/" + name)) ?? []).isEmpty
    }
    if !present.isEmpty && !resume && !overwrite && !onlyStarted(runDir) && !foreignConfig {
        if withoutConfig {
            throw InputError(file: runDir, "holds \(present.joined(separator: ", ")) but no config.yaml, which every cladmop run writes first: "
                             + "not a run this command continues or replaces; move them away or choose another --run-dir")
        }
        throw InputError(file: runDir, "already holds a run (\(present.joined(separator: ", "))); \(hint)")
    }
    if onlyConfigWritten(runDir) && !resume && !overwrite {
        // Its config.yaml is replaced: not when it is this command's --config.
        for (option, path) in inputs where !path.isEmpty && resolvedPath(path) == resolvedPath(runDir) + "/config.yaml" {
            throw InputError(file: path, "\(option) is the config.yaml of \(runDir), which this run replaces; copy it out of the run folder first")
        }
    }
    // A pretraining --overwrite removes a pretraining run's files: over a fine-tuned run it would leave that run's kept
    // pretrained/ checkpoint beside the new run, one folder of two kinds.
    let kept = ((try? FileManager.default.contentsOfDirectory(atPath: runDir + "/pretrained")) ?? []).filter(RunLayout.isCheckpointMetadata)
    if overwrite && !artifacts.contains("pretrained") && !kept.isEmpty {
        throw InputError(file: runDir, "holds a fine-tuned run (its pretrained/ keeps \(kept.sorted()[0])); pretrain --overwrite replaces a pretraining run only: choose another --run-dir")
    }
    // And the other way: a fine-tuning --overwrite would delete a pretraining run (its checkpoints, report and metrics).
    if overwrite && artifacts.contains("pretrained"), let sign = pretrainingRunSign(runDir) {
        throw InputError(file: runDir, "holds a pretraining run (\(sign)); finetune --overwrite replaces a fine-tuning run only: choose another --run-dir")
    }
    // The removal (prepareRunDirectory) takes these entries as they are: a link among them goes, not its target. What an
    // interrupted --overwrite left is removed by every command that writes a run here; the previous run by --overwrite.
    let run = resolvedPath(runDir)
    let entries = overwriteRemoves(runDir, artifacts: artifacts)
    // --overwrite deletes only a run's own entries: never those of a folder that holds no run's config.yaml (a probe's
    // checkpoints/ of another tool and its own report.md went without a word).
    if overwrite && !entries.previous.isEmpty && !entries.previous.contains("config.yaml") {
        throw InputError(file: runDir, "holds \(entries.previous.prefix(5).joined(separator: ", "))\(entries.previous.count > 5 ? ", ..." : "") but no config.yaml, which every cladmop run writes first: "
                         + "--overwrite replaces a cladmop run only and removes nothing here; move them away or choose another --run-dir")
    }
    for name in entries.leftovers + (overwrite ? entries.previous : []) {
        let removed = run + "/" + name
        for (option, path) in inputs where !path.isEmpty {
            let p = resolvedPath(path)
            if p == removed || p.hasPrefix(removed + "/") {
                throw InputError(file: path, "\(option) lies in \(runDir)/\(name), which "
                                 + (entries.leftovers.contains(name) ? "this command removes (what an interrupted --overwrite left)" : "--overwrite deletes with the previous run")
                                 + "; move it out of the run folder first")
            }
        }
    }
    if foreignConfig {
        throw InputError(file: runDir + "/config.yaml", "is not a configuration that a cladmop run wrote (not a regular file that starts with the line \"\(runConfigHeader.dropLast())\"): "
                         + "this command would replace it\(overwrite ? " and delete the folder's other run entries" : ""); move it away or choose another --run-dir")
    }
    // --resume auto into such a folder starts afresh when it holds no checkpoint of ours, writing over those entries
    // (another tool's checkpoints/ filled with this run's, the user's report.md replaced).
    if resume && !ownEntries.isEmpty && !present.contains("config.yaml")
        && Checkpoints.list(dir: runDir + "/checkpoints").isEmpty && !FileManager.default.fileExists(atPath: runDir + "/checkpoints/best.json") {
        throw InputError(file: runDir, "holds \(ownEntries.joined(separator: ", ")) but no config.yaml, which every cladmop run writes first, and no checkpoint of one: "
                         + "not a run that --resume auto continues; move them away or choose another --run-dir")
    }
}

/// The run folder (other than `own`) that `target` is, or is a run entry of (its checkpoints/, metrics.jsonl, ...), or lies
/// inside one of the folders of (checkpoints/, members/, pretrained/); nil for none.
func runOwning(_ target: URL, except own: String) -> String? {
    let parent = target.deletingLastPathComponent()
    if parent.path != own && RunLayout.isRun(parent.path) && finetuneArtifacts.contains(target.lastPathComponent) { return parent.path }
    var above = parent
    while above.path != "/" && above.path != own {
        let owner = above.deletingLastPathComponent()
        if ["checkpoints", "members", "pretrained"].contains(above.lastPathComponent) && owner.path != own && RunLayout.isRun(owner.path) {
            return owner.path
        }
        above = owner
    }
    // Last: the run folder itself, with the config.yaml every run writes (a checkpoints/ folder with its best.json also
    // reads as a run: one kept on a larger disk is this run's own).
    return target.path != own && RunLayout.isRun(target.path) && FileManager.default.fileExists(atPath: target.path + "/config.yaml") ? target.path : nil
}

/// A run folder that holds only the config.yaml a command writes when it prepares the folder: that command stopped
/// (a bad input found later, an interruption) before training wrote anything; a new run may take the folder.
/// (Judged by every file either kind of run writes, TensorBoard's included: not by one command's own list.)
public func onlyStarted(_ runDir: String) -> Bool {
    onlyConfigWritten(runDir) && holdsRunConfig(runDir)
}

/// Whether config.yaml is the only run entry of `runDir` (whoever wrote it).
func onlyConfigWritten(_ runDir: String) -> Bool {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []
    return finetuneArtifacts.filter { names.contains($0) } == ["config.yaml"] && !names.contains { $0.hasPrefix("events.out.tfevents.") }
}

/// The first line of every config.yaml that a run writes (`Config.yaml`).
let runConfigHeader = "# resolved cladmop configuration\n"

/// Whether `runDir/config.yaml` is a regular file that a run wrote (it starts with `runConfigHeader`). A config.yaml
/// written by hand or by another program (a probe's "my config: 1") is not: such a folder is no run to take or replace.
public func holdsRunConfig(_ runDir: String) -> Bool {
    let path = runDir + "/config.yaml"
    guard let data = try? readRegularFile(path, what: "run configuration", limit: 1 << 26) else { return false }
    FilesRead.forget(path)      // looked at to be replaced, not an input of this command
    return data.starts(with: Data(runConfigHeader.utf8))
}

/// What shows that `dir` holds a pretraining run, finished or not: its checkpoints/best.json without a best.json of its
/// own, a checkpoint of kind pretrain in checkpoints/, or its report's plots (loss.svg, retrieval.svg); nil for none.
public func pretrainingRunSign(_ dir: String) -> String? {
    if RunLayout.isPretrainingRun(dir) { return "checkpoints/best.json" }
    for plot in ["loss.svg", "retrieval.svg"] where FileManager.default.fileExists(atPath: dir + "/" + plot) { return plot }
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints")) ?? []).filter(RunLayout.isCheckpointMetadata).sorted()
    for name in names {
        // A regular file only (a FIFO under a checkpoint's name would block the read).
        guard let data = try? readRegularFile(dir + "/checkpoints/" + name, what: "checkpoint metadata", limit: 64 << 20),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
        if object["kind"] as? String == "pretrain" { return "checkpoints/\(name), a pretraining checkpoint" }
    }
    return nil
}

/// The files and folders a run specification reads (its --config, data.files, data.exclude_csvs, data.exclude_file, data.icd_hierarchy,
/// data.feature_store, encoder.model_dir), named by their keys: `checkRunDirectory`'s inputs.
public func specInputs(_ spec: RunSpec, config: String?) -> [(option: String, path: String)] {
    [("--config", config ?? "")] + spec.data.files.map { ("data.files", $0) } + spec.data.excludeCSVs.map { ("data.exclude_csvs", $0) }
        + [("data.exclude_file", spec.data.excludeFile ?? ""), ("data.icd_hierarchy", spec.data.icdHierarchy),
           ("data.feature_store", spec.data.featureStore), ("encoder.model_dir", spec.encoder.modelDir)]
}

/// Rank 0 creates the run directory (with `overwrite`, the previous run's files are deleted first; other files
/// are left alone) and writes the resolved configuration into it. Called once the command's inputs have been
/// read and checked, so that a refused command leaves no run folder behind.
/// Two commands started on the same new --run-dir both pass `checkRunDirectory`: rank 0 therefore holds an exclusive
/// lock on the folder (flock on its descriptor, released when the process ends, also by a crash) from here on,
/// refuses a folder another running command holds, and checks again for a run written there in between.
public func prepareRunDirectory(_ runDir: String, config: Config, comm: Communicator, resume: Bool = false, overwrite: Bool = false,
                         artifacts: [String] = runArtifacts) throws {
    guard comm.isRoot else { return }
    try makeDirectory(runDir, option: "--run-dir")
    try lockRunForWriting(runDir)
    if !resume && !overwrite {
        let present = artifacts.filter { FileManager.default.fileExists(atPath: runDir + "/" + $0) }
        if !present.isEmpty && !onlyStarted(runDir) {
            throw InputError(file: runDir, "a run was written there after this command started (\(present.joined(separator: ", "))); choose another --run-dir")
        }
    }
    if overwrite { try removePreviousRun(runDir, artifacts: artifacts) } else { removeOverwriteLeftovers(runDir) }
    try writeTextFile(runDir + "/config.yaml", replacingInput: true, config.yaml)
}

/// Removes what an earlier --overwrite in `runDir` left under hidden names (".overwritten-PID-NAME": the run it
/// replaced, which it was removing when it was killed, or which the file system refused), saying so; a removal that
/// fails is a warning. The caller holds the folder's exclusive lock, so no command is removing them still. (A killed
/// --overwrite's leftovers had stayed until the next --overwrite, also through any number of resumes.)
func removeOverwriteLeftovers(_ runDir: String) {
    let leftovers = overwriteRemoves(runDir, artifacts: []).leftovers
    guard !leftovers.isEmpty else { return }
    let failed = leftovers.compactMap { removeTree(runDir + "/" + $0) }
    standardErrorWrite(Data("note: \(printable(runDir)): removed \(leftovers.count - failed.count) of the \(leftovers.count) entries that an interrupted --overwrite left (\(leftovers.prefix(3).joined(separator: ", "))\(leftovers.count > 3 ? ", ..." : ""))\n".utf8))
    for (path, reason) in failed {
        standardErrorWrite(Data("warning: \(printable(path)): cannot remove it (\(reason)); an earlier --overwrite's leftover: remove it by hand\n".utf8))
    }
}

/// --overwrite: the previous run's files in `runDir` (`artifacts`, and TensorBoard's event files, which carry the time
/// in their names; a link among them goes, not its target) are first all renamed aside in the run folder
/// (".overwritten-PID-NAME": no new folder, no new blocks, the same parent), then removed. A rename that fails puts
/// back those already renamed and throws: the previous run stays whole. A removal that fails afterwards (an immutable
/// folder deep in a checkpoint folder) leaves what remains under those hidden names, out of the new run's way, and
/// says so: never half a run under the run's own names. Hidden names that an earlier --overwrite left (killed while
/// it removed, or refused by the file system) are removed first: the caller holds the folder's exclusive lock, so no
/// command is removing them still.
func removePreviousRun(_ runDir: String, artifacts: [String]) throws {
    func warn(_ path: String, _ reason: String, _ what: String) {
        standardErrorWrite(Data("warning: \(printable(path)): cannot remove it (\(reason)); \(what)\n".utf8))
    }
    // config.yaml last: a run folder that still holds it is the previous run's to any command (Launch/pretrain's
    // restart repeats --overwrite while its inode is the old one); renamed first, a SIGKILL between two renames had left
    // the old checkpoints for a restart's --resume auto to continue (a crash-consistency review).
    let found = overwriteRemoves(runDir, artifacts: artifacts).previous
    let previous = found.filter { $0 != "config.yaml" } + found.filter { $0 == "config.yaml" }
    removeOverwriteLeftovers(runDir)
    guard !previous.isEmpty else { return }
    let tag = ".overwritten-\(getpid())-"
    var moved: [String] = []
    func putBack() -> String {
        let stuck = moved.reversed().filter { rename(runDir + "/" + tag + $0, runDir + "/" + $0) != 0 }
        return stuck.isEmpty ? "the previous run is left as it was"
            : "the previous run is left as it was but for \(stuck.map { tag + $0 }.joined(separator: ", ")), which could not be renamed back: drop the '\(tag)' from their names"
    }
    // All renamed or none: a SIGINT, SIGTERM or SIGHUP meanwhile is held until the renames are done, then they are undone.
    var failure: InputError?
    let signal = TemporaryFiles.holdingSignals {
        for name in previous {
            guard rename(runDir + "/" + name, runDir + "/" + tag + name) == 0 else {
                let reason = String(cString: strerror(errno))
                failure = InputError(file: runDir + "/" + name, "cannot move it aside for --overwrite (\(reason)); nothing was removed, " + putBack())
                return
            }
            moved.append(name)
        }
    }
    if signal != 0 {
        let outcome = failure == nil ? putBack() : "the previous run is left as it was"
        TemporaryFiles.endBySignal(signal, saying: "cladmop: interrupted before --overwrite removed anything; \(outcome)")
    }
    if let failure { throw failure }
    syncFolder(of: runDir + "/config.yaml")
    TemporaryFiles.sayOnInterrupt("cladmop: interrupted while --overwrite removed the previous run; what remains of it is named \(tag)NAME in \(printable(runDir)) (the next command that writes a run there removes it)")
    let failed = moved.compactMap { removeTree(runDir + "/" + tag + $0) }
    TemporaryFiles.sayOnInterrupt(nil)
    if let (path, reason) = failed.first {
        warn(path, reason, "the previous run's files that remain are named \(tag)NAME in \(printable(runDir)), out of the new run's way: remove them by hand")
    }
}

/// What --overwrite removes in `runDir` (`checkRunDirectory` refuses an input inside any of it, `removePreviousRun`
/// removes it): what earlier overwrites left (".overwritten-*"), and the previous run's entries present (`artifacts`,
/// and TensorBoard's event files, which carry the time in their names; a link counts as itself, even dangling).
func overwriteRemoves(_ runDir: String, artifacts: [String]) -> (leftovers: [String], previous: [String]) {
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []).sorted()
    var st = stat()
    let previous = (artifacts + names.filter { $0.hasPrefix("events.out.tfevents.") }).filter { lstat(runDir + "/" + $0, &st) == 0 }
    return (names.filter(isOverwriteLeftover), previous)
}

/// ".overwritten-PID-NAME" of a process that is not running (on a file system without locks, another --overwrite that
/// is still removing its own is left to it).
func isOverwriteLeftover(_ name: String) -> Bool {
    let parts = name.split(separator: "-", maxSplits: 2, omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0] == ".overwritten", let pid = Int32(parts[1]), pid > 0, !parts[2].isEmpty else { return false }
    return pid == getpid() || !(kill(pid, 0) == 0 || errno == EPERM)
}
