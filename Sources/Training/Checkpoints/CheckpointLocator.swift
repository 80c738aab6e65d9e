import Foundation
import Support

/// The run folder a path names when it is one of the run's own pointers: RUN for RUN/best.json, RUN/checkpoints and
/// RUN/checkpoints/best.json (a pretraining run's best.json, whose path is relative to RUN); any other path as given.
/// Scoring takes a fine-tuned run's best.json as its run, so that an ensemble is scored as one, not as the member it names.
public func runFolder(named path: String) -> String {
    var current = URL(fileURLWithPath: path)
    var isDir: ObjCBool = false
    if current.lastPathComponent == "best.json", FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
        current = current.deletingLastPathComponent()
    }
    if current.lastPathComponent == "checkpoints", RunLayout.isPretrainingRun(current.deletingLastPathComponent().path) {
        current = current.deletingLastPathComponent()
    }
    return current.path == URL(fileURLWithPath: path).path ? path : current.path
}

/// The checkpoint JSON a command argument names: the .json itself, its .safetensors, or a run directory
/// (its `best.json` or `checkpoints/best.json`, whose "checkpoint" may name another run directory; `runFolder(named:)`
/// for a run's best.json or checkpoints folder). Links are followed at most `maxLinks` times; a cycle is refused.
public func resolveCheckpointJSON(_ path: String, maxLinks: Int = 4) throws -> String {
    try requireResolvableLink(path, what: "a checkpoint .json or .safetensors, or a run folder")
    guard FileManager.default.fileExists(atPath: path) else {
        throw InputError(file: path, "no such file or folder (expected a checkpoint .json or .safetensors, or a run folder)")
    }
    var current = runFolder(named: path), visited: [String] = []
    while true {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: current, isDirectory: &isDir), isDir.boolValue else { break }
        let key = URL(fileURLWithPath: current).standardizedFileURL.path
        guard !visited.contains(key) else {
            throw InputError(file: path, "best.json links form a cycle (\((visited + [key]).joined(separator: " -> ")))")
        }
        guard visited.count < maxLinks else {
            throw InputError(file: path, "more than \(maxLinks) best.json links (\(visited.joined(separator: " -> "))); name a checkpoint file")
        }
        visited.append(key)
        var next: String?
        for candidate in [current + "/best.json", current + "/checkpoints/best.json"] {
            try requireResolvableLink(candidate, what: "the run's best.json")
            guard FileManager.default.fileExists(atPath: candidate) else { continue }
            let c = try BestJSON.read(candidate).checkpoint
            next = c.hasPrefix("/") ? c : current + "/" + c
            break
        }
        guard let next else {
            // A run folder (its config.yaml) that has no best.json yet.
            if RunLayout.isUnfinished(current) {
                throw InputError(file: current, "is a run folder without best.json: its run did not finish (pretraining writes checkpoints/best.json "
                                 + "at its first checkpoint after a validation, fine-tuning its best.json when training ends; pretrain --resume auto "
                                 + "continues a pretraining run, fine-tuning starts again with --overwrite), or name one of its checkpoint files")
            }
            throw InputError(file: current, "is a directory without best.json; name a checkpoint file")
        }
        current = next
    }
    if current.hasSuffix(".safetensors") { return String(current.dropLast(".safetensors".count)) + ".json" }
    if current.hasSuffix(".json") { return current }
    throw InputError(file: current, "expected a checkpoint (.safetensors or .json) or a run directory")
}

/// A warning when `path` names a pretraining run (its folder, checkpoints/ or checkpoints/best.json) whose metrics.jsonl
/// does not end with the summary record training writes when it ends (the run was stopped, or runs in another
/// process): its best checkpoint so far is what is used. Nil otherwise (a finished run, a checkpoint file, a fine-tuning run).
public func unfinishedPretrainingWarning(_ path: String) -> String? {
    let run = runFolder(named: path)
    guard RunLayout.isPretrainingRun(run), let tail = try? readTail(run + "/metrics.jsonl", bytes: 1 << 16) else { return nil }
    // The last record: blank lines, carriage returns and NUL padding (a crash can leave it) are not records.
    let last = tail.split(separator: 0x0A).last { line in !line.allSatisfy { [0x20, 0x09, 0x0D, 0x00].contains($0) } }
    if let last, String(decoding: last, as: UTF8.self).contains("\"type\":\"summary\"") { return nil }
    return "warning: \(path): this pretraining run did not finish (its metrics.jsonl ends without the summary record written when training "
        + "ends): its best checkpoint so far (checkpoints/best.json) is used (pretrain --resume auto continues the run)"
}
