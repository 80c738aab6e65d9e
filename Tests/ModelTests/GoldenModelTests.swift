import Foundation
import Communication
import Config
import Model
import NN
import Training
import XCTest

/// The golden whole-model test (the pattern of llm.c's test_gpt2): cladmop's CLaDMoP, loaded with the weights
/// of the PyTorch reference (`DMBranch` of benchmarks/train_torch.py, run in float64 by
/// Tests/Fixtures/make_golden.py), runs the training step on the fixture's batch, and f_DM, the symmetric
/// InfoNCE loss and the gradient of every parameter must match PyTorch's.
///
/// Measure: relative = max|cladmop - torch| / max|torch| over a tensor. Bounds: f_DM 1e-5, loss 1e-5, each
/// gradient tensor 1e-4. The attention key biases have a gradient that is exactly zero in exact arithmetic
/// (softmax ignores a constant added to a row of scores; torch's float64 gives ~1e-19, cladmop writes 0):
/// for a tensor whose reference is below 1e-12 of the largest gradient, max|cladmop - torch| is measured
/// against the largest gradient of the model instead, bound 1e-7.
final class GoldenModelTests: XCTestCase {
    static let fixturePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/golden_model.safetensors").path
    static let fDMBound = 1e-5, lossBound = 1e-5, gradientBound = 1e-4, zeroGradientBound = 1e-7

    struct Fixture {
        let file: SafetensorsFile
        let config: ModelConfig
        let batch: ModelBatch
        func floats(_ name: String) -> [Float] { try! file.floats(name) }
    }

    /// What one comparison measured.
    struct Comparison {
        var fDM = 0.0, fC = 0.0, loss = 0.0
        var gradients: [String: Double] = [:]       // relative (or, for exact-zero references, zero-relative) per tensor
        var zeroReferences: Set<String> = []
        var worstGradient: (name: String, error: Double) {
            let w = gradients.filter { !zeroReferences.contains($0.key) }.max { $0.value < $1.value }!
            return (w.key, w.value)
        }
        var worstZeroGradient: Double { zeroReferences.map { gradients[$0]! }.max() ?? 0 }
    }

    static func loadFixture() throws -> Fixture {
        let file = try SafetensorsFile(path: fixturePath)
        let json = try XCTUnwrap(file.metadata["model_config"], "fixture without model_config metadata")
        let config = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8))
        func ints(_ name: String) throws -> [Int32] { try file.floats(name).map { Int32($0) } }
        func bytes(_ name: String) throws -> [UInt8] { try file.floats(name).map { UInt8($0) } }
        var b = ModelBatch()
        let molShape = try XCTUnwrap(file.tensors["input.mol_ids"]).shape
        let codeShape = try XCTUnwrap(file.tensors["input.code_ids"]).shape
        let sentenceShape = try XCTUnwrap(file.tensors["input.sentence_mask"]).shape
        XCTAssertEqual(molShape.count, 3); XCTAssertEqual(molShape.last, 2)
        XCTAssertEqual(codeShape.last, config.icdTableSizes.count + 1)
        b.count = molShape[0]
        b.molLength = molShape[1]; b.molIds = try ints("input.mol_ids"); b.molMask = try bytes("input.mol_mask")
        b.codeLength = codeShape[1]; b.codeIds = try ints("input.code_ids"); b.codeMask = try bytes("input.code_mask")
        b.sentenceLength = sentenceShape[1]; b.criteria = try file.floats("input.criteria")
        b.sentenceMask = try bytes("input.sentence_mask")
        XCTAssertEqual(file.tensors["input.criteria"]?.shape, [3, b.count, b.sentenceLength, config.encoderDim])
        return Fixture(file: file, config: config, batch: b)
    }

    static func relative(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count)
        var diff = 0.0, scale = 0.0
        for i in a.indices { diff = max(diff, abs(Double(a[i]) - Double(b[i]))); scale = max(scale, abs(Double(b[i]))) }
        return diff / scale
    }

    /// Builds CLaDMoP from the fixture's config and weights (every parameter must come from the fixture and every
    /// fixture weight must be used), runs the training step (`ContrastiveStep`) at W = 1 on `batch` with
    /// log s = `logScale` (default: the fixture's) and compares with PyTorch.
    static func compare(_ f: Fixture, batch: ModelBatch? = nil, logScale: Float? = nil) throws -> Comparison {
        let config = f.config, b = batch ?? f.batch, n = b.count, e = config.encoderDim
        let p = ParameterArena(seed: 0)
        let model = CLaDMoP(config, params: p)
        p.finalize()
        model.initializeLogScale()
        var unused = Set(f.file.tensors.keys.filter { $0.hasPrefix("param.") })
        for entry in p.entries {
            let name = "param." + entry.name
            unused.remove(name)
            // Throws (the test fails) when the fixture lacks the parameter or has another shape.
            try f.file.copy(name, shape: entry.shape, into: p.values + entry.offset)
        }
        guard unused.isEmpty else {
            XCTFail("fixture weights that cladmop does not have: \(unused.sorted())")
            return Comparison()
        }
        if let logScale { p.value(model.logScale)[0] = logScale }

        // The forward alone: f_DM and f_C.
        let arena = ActivationArena()
        let state = model.forward(b, arena: arena)
        let fDM = Array(UnsafeBufferPointer(start: state.fDM, count: n * e))
        let fCBuffer = arena.allocate(n * e)
        b.criteriaEmbedding(dim: e, into: fCBuffer)
        let fCValues = Array(UnsafeBufferPointer(start: fCBuffer, count: n * e))
        // The training step itself (`ContrastiveStep`, as pretraining and bench run it) on one rank: loss and
        // gradients. No clipping and lr 0, so the gradients are left as computed and the weights unchanged.
        let spec = try RunSpec(Config(file: nil, overrides: ["train.grad_clip=0", "optimizer.lr=0", "loss.normalize=true"]))
        let step = ContrastiveStep(model: model, optimizer: Optimizer(kind: .adam, params: p), comm: SingleProcessCommunicator(),
                                   loss: spec.loss, train: spec.train, faults: .none)
        let result = try step.run(globalBatch: n, mine: 0..<n, rows: { XCTAssertEqual($0, 0..<n); return b }, lrScale: 0)

        var c = Comparison()
        c.fDM = relative(fDM, f.floats("output.f_dm"))
        c.fC = relative(fCValues, f.floats("output.f_c"))
        c.loss = relative([result.loss], f.floats("output.loss"))
        let references = Dictionary(uniqueKeysWithValues: p.entries.map { ($0.name, f.floats("grad." + $0.name)) })
        let largest = references.values.flatMap { $0 }.map { abs(Double($0)) }.max()!
        for entry in p.entries {
            let mine = Array(UnsafeBufferPointer(start: p.grads + entry.offset, count: entry.count))
            let ref = references[entry.name]!
            XCTAssertEqual(ref.count, entry.count, entry.name)
            if ref.map({ abs(Double($0)) }).max()! < 1e-12 * largest {
                c.zeroReferences.insert(entry.name)
                c.gradients[entry.name] = zip(mine, ref).map { abs(Double($0) - Double($1)) }.max()! / largest
            } else {
                c.gradients[entry.name] = relative(mine, ref)
            }
        }
        let unusedGradients = Set(f.file.tensors.keys.filter { $0.hasPrefix("grad.") }).subtracting(p.entries.map { "grad." + $0.name })
        XCTAssertTrue(unusedGradients.isEmpty, "fixture gradients of no cladmop parameter: \(unusedGradients.sorted())")
        return c
    }

    func testMatchesPyTorch() throws {
        let f = try Self.loadFixture()
        // Every cladmop parameter is in the fixture (compare() copies each by name).
        let probe = ParameterArena(seed: 0)
        _ = CLaDMoP(f.config, params: probe)
        let missing = probe.entries.map(\.name).filter { f.file.tensors["param." + $0] == nil || f.file.tensors["grad." + $0] == nil }
        XCTAssertTrue(missing.isEmpty, "cladmop parameters missing from the fixture: \(missing)")
        guard missing.isEmpty else { return }
        XCTAssertGreaterThan(probe.entries.count, 200)

        let c = try Self.compare(f)
        let worst = c.worstGradient
        print(String(format: "golden: f_DM %.3g, f_C %.3g, loss %.3g, worst gradient %.3g (%@) over %d tensors; %d exact-zero references, worst %.3g",
                     c.fDM, c.fC, c.loss, worst.error, worst.name, c.gradients.count, c.zeroReferences.count, c.worstZeroGradient))
        XCTAssertLessThan(c.fDM, Self.fDMBound, "f_DM")
        XCTAssertLessThan(c.fC, Self.fDMBound, "f_C")
        XCTAssertLessThan(c.loss, Self.lossBound, "loss")
        XCTAssertEqual(c.gradients.count, probe.entries.count)
        for (name, err) in c.gradients.sorted(by: { $0.key < $1.key }) {
            let bound = c.zeroReferences.contains(name) ? Self.zeroGradientBound : Self.gradientBound
            XCTAssertLessThan(err, bound, "gradient of \(name)")
        }
        // Only the attention key biases have an exactly-zero gradient.
        XCTAssertTrue(c.zeroReferences.allSatisfy { $0.hasSuffix(".attn.k.bias") }, "\(c.zeroReferences.sorted())")
    }

    /// Negative controls: the same comparison with a deliberate error must exceed the bounds.
    func testComparisonDetectsDeliberateErrors() throws {
        let f = try Self.loadFixture()
        // 1. A wrong key mask: trial 1's first padding position of the molecule tokens is taken as a real token.
        var wrongMask = f.batch
        let i = 1, real = (0..<wrongMask.molLength).filter { wrongMask.molMask[i * wrongMask.molLength + $0] == 1 }.count
        XCTAssertLessThan(real, wrongMask.molLength, "trial 1 needs molecule padding")
        wrongMask.molMask[i * wrongMask.molLength + real] = 1
        let m = try Self.compare(f, batch: wrongMask)
        let mw = m.worstGradient
        print(String(format: "golden negative control (wrong mask): f_DM %.3g, loss %.3g, worst gradient %.3g (%@)",
                     m.fDM, m.loss, mw.error, mw.name))
        XCTAssertGreaterThan(m.fDM, 100 * Self.fDMBound)
        XCTAssertGreaterThan(m.loss, Self.lossBound)
        XCTAssertGreaterThan(mw.error, Self.gradientBound)

        // 2. A wrong logit scale (log s 0.6 -> 0.62): f_DM is unchanged, the loss and the gradients are not.
        let s = try Self.compare(f, logScale: f.floats("param.loss.log_scale")[0] + 0.02)
        let sw = s.worstGradient
        print(String(format: "golden negative control (wrong scale): f_DM %.3g, loss %.3g, worst gradient %.3g (%@)",
                     s.fDM, s.loss, sw.error, sw.name))
        XCTAssertLessThan(s.fDM, Self.fDMBound)
        XCTAssertGreaterThan(s.loss, Self.lossBound)
        XCTAssertGreaterThan(sw.error, Self.gradientBound)
    }
}
