import Foundation
import NN
import TextEncoder
import XCTest

struct MPNetReference: Decodable {
    let items: [ReferenceItem]
    let buckets_from: Int?
    let buckets: [Int]?
}

/// MPNet (model_type "mpnet") against PyTorch + transformers' MPNetModel (Tests/Fixtures/make_mpnet_reference.py):
/// a random 3-layer MPNet committed with the repository (tiny_mpnet/, its relative attention bias drawn large, so that
/// a wrong bucket moves the vectors), and all-mpnet-base-v2 itself where Launch/setup --encoder all-mpnet-base-v2
/// installed it.
final class MPNetParityTests: XCTestCase {
    static let fixtures = repoRoot + "/Tests/Fixtures"

    static func reference(_ name: String) throws -> MPNetReference {
        try JSONDecoder().decode(MPNetReference.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + name)))
    }

    /// Token ids equal; every level of every text within `tolerance` of the reference, relative to its largest value.
    func compare(_ enc: BertEncoder, _ reference: MPNetReference, tolerance: Float, label: String) {
        let items = reference.items
        for item in items {
            let ids = enc.tokenizer.encode(item.text)
            XCTAssertEqual(ids, item.input_ids, "\(label): token ids of \(item.text.prefix(60))")
        }
        let out = FloatPtr.allocate(capacity: items.count * 3 * enc.hidden)
        defer { out.deallocate() }
        enc.encode(texts: items.map(\.text), into: out)
        var worst: Float = 0
        for (i, item) in items.enumerated() {
            for (level, ref) in [item.coarse, item.medium, item.fine].enumerated() {
                XCTAssertEqual(ref.count, enc.hidden)
                let v = out + (i * 3 + level) * enc.hidden
                let scale = ref.map(abs).max()!
                var diff: Float = 0
                for k in 0..<enc.hidden { diff = max(diff, abs(v[k] - ref[k])) }
                worst = max(worst, diff / scale)
                XCTAssertLessThanOrEqual(diff / scale, tolerance, "\(label): level \(level) of \(item.text.prefix(60))")
            }
        }
        print("MPNet parity (\(label)): \(items.count) texts x 3 levels, worst difference \(worst) of the largest value")
    }

    func testTinyMPNetMatchesTransformers() throws {
        let enc = try BertEncoder(modelDir: Self.fixtures + "/tiny_mpnet")
        XCTAssertTrue(enc.config.isMPNet)
        XCTAssertEqual(enc.levelLayers, [1, 2, 3])
        XCTAssertEqual(enc.tokenizer.cls, 0); XCTAssertEqual(enc.tokenizer.pad, 1); XCTAssertEqual(enc.tokenizer.sep, 2)
        let reference = try Self.reference("tiny_mpnet_reference.json")
        XCTAssertTrue(reference.items.contains { $0.input_ids.count == 256 }, "a text of 256 tokens: offsets past max_distance")
        compare(enc, reference, tolerance: 1e-4, label: "tiny_mpnet")
    }

    /// `relativeBucket` equals transformers' relative_position_bucket (float32 logarithm, truncation, the clamp at
    /// max_distance 128) on every offset -300 ... 300.
    func testRelativeBucketsMatchTransformers() throws {
        let reference = try Self.reference("tiny_mpnet_reference.json")
        let from = try XCTUnwrap(reference.buckets_from), buckets = try XCTUnwrap(reference.buckets)
        XCTAssertEqual(buckets.count, 601)
        for (k, expected) in buckets.enumerated() {
            XCTAssertEqual(BertEncoder.relativeBucket(from + k), expected, "offset \(from + k)")
        }
    }

    func testAllMPNetBaseV2MatchesTransformers() throws {
        let dir = repoRoot + "/models/all-mpnet-base-v2"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: dir + "/model.safetensors"),
                          "\(dir) not installed (Launch/setup --encoder all-mpnet-base-v2)")
        let enc = try BertEncoder(modelDir: dir)
        XCTAssertEqual(enc.hidden, 768)
        XCTAssertEqual(enc.levelLayers, [4, 8, 12])
        compare(enc, try Self.reference("mpnet_base_reference.json"), tolerance: 1e-4, label: "all-mpnet-base-v2")
    }

    /// A sentence alone and inside a padded batch of longer ones: the same vector (the relative bias is laid out by
    /// the batch's padded length, the padding masked).
    func testBatchCompositionDoesNotChangeVectors() throws {
        let enc = try BertEncoder(modelDir: Self.fixtures + "/tiny_mpnet")
        let texts = ["age 18 years", "patients with metastatic cancer who have received prior therapy for advanced disease"]
        let tokens = texts.map { enc.tokenizer.encode($0) }
        let alone = FloatPtr.allocate(capacity: 2 * 3 * enc.hidden), together = FloatPtr.allocate(capacity: 2 * 3 * enc.hidden)
        defer { alone.deallocate(); together.deallocate() }
        enc.encode(indices: [0], tokens: tokens, into: alone)
        enc.encode(indices: [0, 1], tokens: tokens, into: together)
        for k in 0..<3 * enc.hidden { XCTAssertEqual(alone[k], together[k], accuracy: 1e-5) }
    }
}
