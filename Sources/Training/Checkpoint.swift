import Foundation
import Model
import NN

/// Metadata written next to each checkpoint's safetensors file (docs/checkpoints.md).
public struct CheckpointMeta: Codable {
    public var format = "cladmop-checkpoint"
    public var version = 1
    public var kind: String                 // "pretrain" or "finetune"
    public var step: Int
    public var epoch: Int
    /// Steps already taken within `epoch` (the sampler position to resume from).
    public var stepInEpoch: Int
    public var worldSize: Int
    public var globalBatch: Int
    public var configHash: String
    public var optimizerStep: Int
    public var model: ModelConfig
    public var features: FeatureSpace
    public var storeIdentity: String
    public var metrics: [String: Double]
    public var tensorsFile: String
    public var tensorsChecksum: String
    public var tensorsBytes: Int
    /// Fine-tuning: the pretrained checkpoint this one adds to, and that file's checksum.
    public var pretrained: String?
    public var pretrainedChecksum: String?
    public var extra: [String: String] = [:]
}

/// Checkpoint files: `DIR/step-00000120.safetensors` (parameters by name, optimizer moments as
/// `optimizer.m.NAME` / `optimizer.v.NAME`) and `DIR/step-00000120.json` (CheckpointMeta). Each file is
/// written to a temporary name, fsynced and renamed, the JSON last: a checkpoint whose JSON exists and whose
/// tensors match its recorded checksum is complete.
public enum Checkpoints {
    public static func name(step: Int) -> String { String(format: "step-%08d", step) }

    public static func fileChecksum(_ path: String) throws -> (String, Int) {
        let f = try MappedFile(path: path)
        return (String(checksum64(f.bytes), radix: 16), f.bytes.count)
    }

    /// Writes parameters (only those `include` accepts) and optionally the optimizer moments.
    public static func save(dir: String, meta: CheckpointMeta, params: ParameterArena, optimizer: Optimizer?,
                            include: (ParameterArena.Entry) -> Bool = { _ in true }) throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let base = dir + "/" + name(step: meta.step)
        var tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)] = []
        for e in params.entries where include(e) { tensors.append((e.name, e.shape, UnsafePointer(params.values + e.offset))) }
        if let optimizer {
            for e in params.entries where include(e) && !params.groups[e.group].frozen {
                tensors.append(("optimizer.m." + e.name, e.shape, UnsafePointer(optimizer.m + e.offset)))
                tensors.append(("optimizer.v." + e.name, e.shape, UnsafePointer(optimizer.v + e.offset)))
            }
        }
        try maybeInjectCheckpointFault(stage: "before", step: meta.step)
        try writeSafetensors(path: base + ".safetensors", tensors: tensors, metadata: ["format": "cladmop", "step": "\(meta.step)"])
        try maybeInjectCheckpointFault(stage: "between", step: meta.step)
        var m = meta
        m.tensorsFile = URL(fileURLWithPath: base + ".safetensors").lastPathComponent
        (m.tensorsChecksum, m.tensorsBytes) = try fileChecksum(base + ".safetensors")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try encoder.encode(m)
        try writeFileAtomically(base + ".json") { try $0.write(contentsOf: json) }
        return base
    }

    /// Reads and verifies one checkpoint (JSON + tensors checksum). Throws an InputError naming the problem.
    public static func load(jsonPath: String) throws -> (CheckpointMeta, SafetensorsFile) {
        guard let data = FileManager.default.contents(atPath: jsonPath) else { throw InputError(file: jsonPath, "cannot read checkpoint metadata") }
        let meta: CheckpointMeta
        do { meta = try JSONDecoder().decode(CheckpointMeta.self, from: data) }
        catch { throw InputError(file: jsonPath, "not a cladmop checkpoint metadata file: \(error)") }
        guard meta.format == "cladmop-checkpoint", meta.version == 1 else {
            throw InputError(file: jsonPath, "unsupported checkpoint format \(meta.format) version \(meta.version)")
        }
        let tensorsPath = URL(fileURLWithPath: jsonPath).deletingLastPathComponent().appendingPathComponent(meta.tensorsFile).path
        guard FileManager.default.fileExists(atPath: tensorsPath) else { throw InputError(file: tensorsPath, "missing (named by \(jsonPath))") }
        let (sum, bytes) = try fileChecksum(tensorsPath)
        guard sum == meta.tensorsChecksum, bytes == meta.tensorsBytes else {
            throw InputError(file: tensorsPath, "damaged: checksum \(sum) (\(bytes) bytes) differs from the recorded \(meta.tensorsChecksum) (\(meta.tensorsBytes) bytes)")
        }
        return (meta, try SafetensorsFile(path: tensorsPath))
    }

    /// The checkpoint JSON paths of `dir`, newest step first.
    public static func list(dir: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".json") }.sorted(by: >).map { dir + "/" + $0 }
    }

    /// Newest valid checkpoint of `dir`; damaged newer ones are skipped and reported through `log`.
    public static func newestValid(dir: String, log: (String) -> Void) -> (String, CheckpointMeta, SafetensorsFile)? {
        for path in list(dir: dir) {
            do {
                let (meta, tensors) = try load(jsonPath: path)
                return (path, meta, tensors)
            } catch {
                log("resume: skipping damaged checkpoint \(path): \(error); falling back to the previous one")
            }
        }
        return nil
    }

    /// Copies tensors into the arena by name (shapes checked); `optimizer` receives the moments when present.
    public static func restore(_ file: SafetensorsFile, into params: ParameterArena, optimizer: Optimizer?,
                               only: (ParameterArena.Entry) -> Bool = { _ in true }) throws {
        for e in params.entries where only(e) {
            try file.copy(e.name, shape: e.shape, into: params.values + e.offset)
            if let optimizer, !params.groups[e.group].frozen, file.tensors["optimizer.m." + e.name] != nil {
                try file.copy("optimizer.m." + e.name, shape: e.shape, into: optimizer.m + e.offset)
                try file.copy("optimizer.v." + e.name, shape: e.shape, into: optimizer.v + e.offset)
            }
        }
    }

    /// Deletes all but the newest `keep` checkpoints, never the one named `protected`, and the temporary
    /// files that a crash in the middle of a write left behind.
    public static func prune(dir: String, keep: Int, protected: String?) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
            unlink(dir + "/" + name)
        }
        for path in list(dir: dir).dropFirst(keep) {
            let base = String(path.dropLast(5))
            if let protected, URL(fileURLWithPath: base).lastPathComponent == protected { continue }
            unlink(path)
            unlink(base + ".safetensors")
        }
    }
}

/// CLADMOP_FAULT=checkpoint_crash:before|between[:STEP] kills the process while writing a checkpoint
/// (of step STEP, or any): "between" is after the tensors file is complete and before its JSON.
func maybeInjectCheckpointFault(stage: String, step: Int) throws {
    guard let f = ProcessInfo.processInfo.environment["CLADMOP_FAULT"] else { return }
    if f == "checkpoint_crash:" + stage || f == "checkpoint_crash:\(stage):\(step)" { kill(getpid(), SIGKILL) }
}
