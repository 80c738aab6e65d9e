import Foundation
import NN
import TextEncoder
import XCTest

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let defaultModelDir = repoRoot + "/models/all-MiniLM-L6-v2"

struct ReferenceItem: Decodable {
    let text: String
    let input_ids: [Int32]
    let coarse: [Float], medium: [Float], fine: [Float]
}
struct Reference: Decodable { let items: [ReferenceItem] }

/// The Swift encoder against PyTorch + transformers (Tests/Fixtures/minilm_l6_reference.json: 64 criterion
/// sentences from the TOP files and hard cases: unicode symbols, an em dash, one letter, 300 words).
final class EncoderParityTests: XCTestCase {
    static var encoder: BertEncoder?
    static let reference: Reference = try! JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: repoRoot + "/Tests/Fixtures/minilm_l6_reference.json")))

    func loadEncoder() throws -> BertEncoder {
        if let e = Self.encoder { return e }
        guard FileManager.default.fileExists(atPath: defaultModelDir + "/model.safetensors") else {
            XCTFail("\(defaultModelDir) is missing: run Launch/setup"); throw XCTSkip("no model")
        }
        let e = try BertEncoder(modelDir: defaultModelDir)
        Self.encoder = e
        return e
    }

    func testTokenizerMatchesHuggingFace() throws {
        let enc = try loadEncoder()
        var mismatches = 0
        for item in Self.reference.items {
            let ids = enc.tokenizer.encode(item.text)
            if ids != item.input_ids { mismatches += 1; XCTFail("token ids differ for \(item.text.prefix(60)): \(ids.prefix(20)) vs \(item.input_ids.prefix(20))") }
        }
        XCTAssertEqual(mismatches, 0)
    }

    /// The worst cosine over every sentence and level between `enc`'s vectors and the PyTorch fp32 reference.
    func worstCosine(_ enc: BertEncoder, label: String) -> Double {
        let items = Self.reference.items
        let out = FloatPtr.allocate(capacity: items.count * 3 * enc.hidden)
        defer { out.deallocate() }
        enc.encode(texts: items.map(\.text), into: out)
        var worst = 1.0
        for (i, item) in items.enumerated() {
            for (level, ref) in [item.coarse, item.medium, item.fine].enumerated() {
                let v = out + (i * 3 + level) * enc.hidden
                var dot = 0.0, a = 0.0, b = 0.0
                for k in 0..<enc.hidden { dot += Double(v[k] * ref[k]); a += Double(v[k] * v[k]); b += Double(ref[k] * ref[k]) }
                let cos = dot / (a * b).squareRoot()
                worst = min(worst, cos)
                XCTAssertGreaterThanOrEqual(cos, 0.999, "\(label): level \(level) of \(item.text.prefix(60))")
            }
        }
        print("encoder parity (\(label)): \(items.count) sentences x 3 levels, worst cosine \(worst)")
        return worst
    }

    func testEveryLevelMatchesPyTorchToCosine0999() throws {
        _ = worstCosine(try loadEncoder(), label: "fp32")
    }

    /// `encoder.precision: bf16` (GEMM inputs rounded to bf16, fp32 accumulation) against the same fp32 PyTorch
    /// reference: every sentence and level at cosine >= 0.999.
    func testBF16EncoderMatchesPyTorchFP32ToCosine0999() throws {
        _ = try loadEncoder()   // the model folder's check
        try XCTSkipUnless(Precision.bf16Available, "no AVX512-BF16 here: encoder.precision bf16 runs as fp32")
        _ = worstCosine(try BertEncoder(modelDir: defaultModelDir, precision: .bf16), label: "bf16")
    }

    func testBatchCompositionDoesNotChangeVectors() throws {
        // A sentence alone and padded inside a batch of longer ones gives the same vector (masked attention).
        let enc = try loadEncoder()
        let texts = ["Age >= 18 years", "Histological diagnosis of metastatic non-small cell lung cancer not amenable to local therapy"]
        let tokens = texts.map { enc.tokenizer.encode($0) }
        let alone = FloatPtr.allocate(capacity: 2 * 3 * enc.hidden), together = FloatPtr.allocate(capacity: 2 * 3 * enc.hidden)
        enc.encode(indices: [0], tokens: tokens, into: alone)
        enc.encode(indices: [0, 1], tokens: tokens, into: together)
        for k in 0..<3 * enc.hidden { XCTAssertEqual(alone[k], together[k], accuracy: 1e-4) }
    }

    func testMissingModelFolderIsAClearError() {
        XCTAssertThrowsError(try BertEncoder(modelDir: "/nonexistent/model")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/model/config.json: missing"), "\(error)")
        }
    }
}
