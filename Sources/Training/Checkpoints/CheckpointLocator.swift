import Foundation
import Support

/// The checkpoint JSON a command argument names: the .json itself, its .safetensors, or a run directory
/// (its `best.json` or `checkpoints/best.json`, whose "checkpoint" may name another run directory). Links are
/// followed at most `maxLinks` times; a cycle is refused.
public func resolveCheckpointJSON(_ path: String, maxLinks: Int = 4) throws -> String {
    var current = path, visited: [String] = []
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
        for candidate in [current + "/best.json", current + "/checkpoints/best.json"] where FileManager.default.fileExists(atPath: candidate) {
            let data = try readRegularFile(candidate, what: "best-checkpoint pointer (best.json)", limit: 1 << 20)
            guard let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let c = o["checkpoint"] as? String, !c.isEmpty else {
                throw InputError(file: candidate, "expected a JSON object with a \"checkpoint\" path")
            }
            next = c.hasPrefix("/") ? c : current + "/" + c
            break
        }
        guard let next else {
            // A run folder (its config.yaml) that has no best.json yet: training writes it when it ends.
            if FileManager.default.fileExists(atPath: current + "/config.yaml") {
                throw InputError(file: current, "is a run folder without best.json: its run did not finish (best.json is written when "
                                 + "training ends; pretrain --resume auto continues a pretraining run, fine-tuning starts again with --overwrite), "
                                 + "or name one of its checkpoint files")
            }
            throw InputError(file: current, "is a directory without best.json; name a checkpoint file")
        }
        current = next
    }
    if current.hasSuffix(".safetensors") { return String(current.dropLast(".safetensors".count)) + ".json" }
    if current.hasSuffix(".json") { return current }
    throw InputError(file: current, "expected a checkpoint (.safetensors or .json) or a run directory")
}
