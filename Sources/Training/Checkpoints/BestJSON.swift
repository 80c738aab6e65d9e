import Foundation
import Support

/// A run's best.json, read and checked in one place: pretraining's checkpoints/best.json (`PretrainBest`) and a
/// fine-tuning run's (`FinetuneSelection`). Every best.json names the selected `checkpoint` (relative to the run folder,
/// or absolute); a fine-tuned ensemble's also lists its `members` with the ensemble's `threshold`, its fold
/// `partitions` and the `folds_checksum` of its folds.csv. Keys this reader does not use (epoch, valid, val_loss, ...)
/// are left alone; a key it uses must hold its value (null is refused, not read as absent).
struct BestJSON: Decodable {
    let checkpoint: String
    let members: [String]?, threshold: Double?, partitions: Int?, foldsChecksum: String?

    enum CodingKeys: String, CodingKey { case checkpoint, members, threshold, partitions, foldsChecksum = "folds_checksum" }

    /// What each key must hold, as the error names it.
    static let expected: [CodingKeys: String] = [
        .checkpoint: "must be the path of the selected checkpoint (a non-empty string)",
        .members: "must be a list of 1 to 64 checkpoint paths (finetune writes one per member)",
        .threshold: "must be a probability in [0, 1]",
        .partitions: "must be a whole number of at least 1 that divides the members (finetune writes finetune.ensemble)",
        .foldsChecksum: "must be a string (finetune writes it)",
    ]

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys) throws -> T? { c.contains(key) ? try c.decode(T.self, forKey: key) : nil }
        checkpoint = try c.decode(String.self, forKey: .checkpoint)
        members = try value(.members); threshold = try value(.threshold); partitions = try value(.partitions)
        foldsChecksum = try value(.foldsChecksum)
    }

    /// The best.json at `file`, with every key it holds checked; an error names the file and the key.
    static func read(_ file: String) throws -> BestJSON {
        let data = try readRegularFile(file, what: "best-checkpoint pointer (best.json)", limit: 1 << 20)
        try refuseDuplicateJSONKeys(data, file: file)
        func refuse(_ key: CodingKeys) -> InputError { InputError(file: file, "key \"\(key.stringValue)\" \(expected[key]!)") }
        let best: BestJSON
        do { best = try JSONDecoder().decode(BestJSON.self, from: data) }
        catch let error as DecodingError {
            let named: String?
            switch error {
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): named = c.codingPath.first?.stringValue
            case .keyNotFound(let key, _): named = key.stringValue
            @unknown default: named = nil
            }
            if let key = named.flatMap(CodingKeys.init(stringValue:)) { throw refuse(key) }
            // Foundation's decoder names no key for a number that fits no Int (1.5) or no Double (1e400): find it.
            let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            if let object, let key = [CodingKeys.threshold, .partitions].first(where: { k in
                guard let v = object[k.stringValue] else { return false }
                guard let n = v as? NSNumber, (v as? Double)?.isFinite ?? false else { return true }
                return k == .partitions && n.doubleValue.rounded() != n.doubleValue
            }) { throw refuse(key) }
            let isObject = data.first(where: { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }) == UInt8(ascii: "{")
            throw InputError(file: file, object == nil && isObject
                ? "is not valid JSON (\(jsonSyntaxProblem(data) ?? "?")); expected a run's best.json"
                : "expected a JSON object with a \"checkpoint\" path (a run's best.json)")
        }
        guard !best.checkpoint.isEmpty else { throw refuse(.checkpoint) }
        if let members = best.members, members.isEmpty || members.count > 64 || members.contains(where: \.isEmpty) { throw refuse(.members) }
        if let t = best.threshold, !(t.isFinite && (0...1).contains(t)) { throw refuse(.threshold) }
        if let p = best.partitions, p < 1 || (best.members.map { $0.count % p != 0 } ?? false) {
            throw InputError(file: file, "key \"partitions\" must be a whole number of at least 1"
                             + (best.members.map { " that divides the \($0.count) members" } ?? "") + " (finetune writes finetune.ensemble)")
        }
        if best.members != nil, best.threshold == nil { throw refuse(.threshold) }
        return best
    }
}
