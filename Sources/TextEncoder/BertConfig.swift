import Support
import Foundation
import NN

/// The fields of a HuggingFace BERT or MPNet `config.json` that the forward pass needs.
public struct BertConfig: Decodable, Sendable {
    public let hidden_size: Int
    public let num_attention_heads: Int
    public let num_hidden_layers: Int
    public let intermediate_size: Int
    public let max_position_embeddings: Int
    public let vocab_size: Int
    public let type_vocab_size: Int?
    public let layer_norm_eps: Double?
    public let hidden_act: String?
    public let position_embedding_type: String?
    public let model_type: String?
    /// MPNet only: rows of its relative attention bias table (HuggingFace's MPNet computes bucket ids for 32 buckets
    /// whatever this says, so at least 32) and the padding token's id (read, not used: HuggingFace's MPNet counts
    /// positions from its fixed padding index 1, a text's token j at position 2 + j).
    public let relative_attention_num_buckets: Int?
    public let pad_token_id: Int?

    /// MPNet (model_type "mpnet", e.g. all-mpnet-base-v2): BERT's post-LN layers with a bias by relative position
    /// added to the attention scores, positions offset by the padding id, no token types.
    public var isMPNet: Bool { model_type == "mpnet" }
    /// The first position a text's tokens take: 0 for BERT, 2 for MPNet (HuggingFace's MPNetEmbeddings: padding_idx 1,
    /// fixed, + 1).
    public var firstPosition: Int { isMPNet ? 2 : 0 }

    /// Reads and validates `config.json`: every value that sizes a table or a layer, or divides, is in range
    /// (errors name the file and the key). A FIFO, directory or device is refused before it is opened.
    public static func load(path: String) throws -> BertConfig {
        let data = try readRegularFile(path, what: "encoder config.json", limit: 16 << 20)
        // Types first, by key (Foundation's decoder calls a fractional or huge number "not valid JSON").
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw InputError(file: path, "not a BERT or MPNet config: not a JSON object")
        }
        try refuseDuplicateJSONKeys(data, file: path)   // HuggingFace (Python) would read the last of a repeated key
        for key in ["hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
                    "vocab_size", "type_vocab_size", "layer_norm_eps", "relative_attention_num_buckets", "pad_token_id"] {
            guard let value = object[key], !(value is NSNull) else { continue }
            let integer = key != "layer_norm_eps"
            // JSON true and false read as NSNumbers too (of Objective-C type "c", char).
            let boolean = (value as? NSNumber).map { String(cString: $0.objCType) == "c" } ?? false
            guard let n = value as? NSNumber, !(value is String), !boolean,
                  !integer || (n.doubleValue.rounded() == n.doubleValue && abs(n.doubleValue) < 1e15) else {
                let shown = boolean ? "\((value as? NSNumber)?.boolValue == true) (a boolean)" : (value as? String).map { "\"\($0.prefix(40))\"" } ?? "\(value)"
                throw InputError.invalid(key, shown, expected: integer ? "an integer" : "a number", in: path)
            }
        }
        let config: BertConfig
        do { config = try JSONDecoder().decode(BertConfig.self, from: data) }
        catch { throw InputError(file: path, "not a BERT or MPNet config: \(describeDecodingError(error, data: data))") }
        try config.validate(path: path)
        return config
    }

    /// Every value that sizes or divides, in range; errors name `path` and the key.
    public func validate(path: String) throws {
        func range(_ key: String, _ v: Int, _ r: ClosedRange<Int>, _ why: String = "") throws {
            guard r.contains(v) else {
                throw InputError.invalid(key, v, expected: "an integer in [\(r.lowerBound), \(r.upperBound)]\(why)", in: path)
            }
        }
        try range("hidden_size", hidden_size, 1...4096, "; the model takes sentence vectors of at most 4096 values (model encoderDim)")
        try range("num_attention_heads", num_attention_heads, 1...hidden_size, ", at most hidden_size = \(hidden_size)")
        guard hidden_size % num_attention_heads == 0 else {
            throw InputError(file: path, "num_attention_heads = \(num_attention_heads) does not divide hidden_size = \(hidden_size) (expected a divisor: each head gets hidden_size / num_attention_heads values)")
        }
        try range("num_hidden_layers", num_hidden_layers, 3...1024, "; the coarse, medium and fine levels are layers L/3, 2L/3 and L")
        try range("intermediate_size", intermediate_size, 1...(1 << 20))
        try range("max_position_embeddings", max_position_embeddings, 2...(1 << 20), "; a text is at least [CLS] and [SEP]")
        try range("vocab_size", vocab_size, 4...(1 << 24), "; [CLS], [SEP], [UNK] and [PAD] at least")
        if let t = type_vocab_size { try range("type_vocab_size", t, 1...(1 << 16)) }
        if let eps = layer_norm_eps {
            guard eps.isFinite, eps > 0, Float(eps).isFinite, Float(eps) >= Float.leastNormalMagnitude else {
                throw InputError.invalid("layer_norm_eps", eps, expected: "a finite number > 0 that a Float32 holds, like 1e-12", in: path)
            }
        }
        if let act = hidden_act, act != "gelu" {
            throw InputError(file: path, "hidden_act = \(act) is not supported (expected gelu)")
        }
        // The forward pass is BERT's with learned absolute positions: another model would run, and be wrong.
        if let kind = position_embedding_type, kind != "absolute" {
            throw InputError(file: path, "position_embedding_type = \(kind) is not supported (expected absolute)")
        }
        if let type = model_type, type != "bert", type != "mpnet" {
            throw InputError(file: path, "model_type = \(type) is not supported (expected bert, a BERT encoder such as all-MiniLM-L6-v2, or mpnet, such as all-mpnet-base-v2)")
        }
        if isMPNet {
            if let b = relative_attention_num_buckets {
                try range("relative_attention_num_buckets", b, 32...(1 << 16), "; MPNet's bucket ids run 0 ..< 32 whatever the table's size")
            }
            guard max_position_embeddings >= firstPosition + 2 else {
                throw InputError.invalid("max_position_embeddings", max_position_embeddings, expected: "at least \(firstPosition + 2): MPNet's positions "
                                         + "start at \(firstPosition), and a text is at least <s> and </s>", in: path)
            }
        }
    }
}
