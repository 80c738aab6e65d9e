import Support
import Model
import NN
import TestSupport
import Training
import XCTest

/// Small CLaDMoP (every part present, tiny sizes) for whole-model checks.
func tinyModelConfig() -> ModelConfig {
    ModelConfig(dim: 8, heads: 2, molLayers: 1, disLayers: 1, groupingLayers: 2, selfLayers: 1, centroids: 4,
                encoderDim: 6, molVocab: 7, maxMolecules: 3, icdTableSizes: [3, 4, 5], categoryCount: 5,
                learnableScale: true, initialLogScale: 0.6)
}

/// A batch of 3 trials with padding in every modality; trial 2 has no SMILES and no ICD code
/// (the "none" token) and trial 1 has a single sentence.
func tinyBatch(encoderDim e: Int, seed: UInt64 = 5) -> ModelBatch {
    var rng = RNG(seed: seed)
    var b = ModelBatch()
    b.count = 3
    b.molLength = 4
    b.molIds = [3, 0, 4, 1, 5, 1, 6, 2, 0, 0,   2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].map(Int32.init)
    b.molMask = [1, 1, 1, 1,  1, 1, 0, 0,  1, 0, 0, 0]
    b.molIds = [3, 0, 4, 1, 5, 1, 6, 2,   4, 0, 3, 0, 0, 0, 0, 0,   2, 0, 0, 0, 0, 0, 0, 0].map(Int32.init)
    b.codeLength = 2
    // (n, Lc, depth 3 + category)
    b.codeIds = [0, 1, 2, 1,   1, 3, -1, 3,    2, 0, 4, 2,  0, 0, 0, 0,    -1, -1, -1, 4,  0, 0, 0, 0].map(Int32.init)
    b.codeMask = [1, 1,  1, 0,  1, 0]
    b.sentenceLength = 3
    b.criteria = (0..<(3 * 3 * 3 * e)).map { _ in rng.normal() }
    b.sentenceMask = [1, 1, 1,  1, 0, 0,  1, 1, 0]
    return b
}

final class ModelGradientTests: XCTestCase {
    func testWholeModelGradientByFiniteDifferences() {
        let config = tinyModelConfig()
        let p = ParameterArena(seed: 3)
        let model = CLaDMoP(config, params: p)
        p.finalize()
        model.initializeLogScale()
        let batch = tinyBatch(encoderDim: config.encoderDim)
        let n = batch.count
        let c = GradCheckCase(params: p) { arena in
            let s = model.forward(batch, arena: arena)
            // Output: f_DM (n, E) and mean(U^{D,M}) (n, d), both differentiated.
            let out = arena.allocate(n * (config.encoderDim + config.dim))
            out.update(from: s.fDM, count: n * config.encoderDim)
            (out + n * config.encoderDim).update(from: s.pooled, count: n * config.dim)
            return (out, n * (config.encoderDim + config.dim), { dy in
                model.backward(s, dFDM: dy, dPooled: dy + n * config.encoderDim, arena: arena)
            })
        }
        let report = gradCheck(c, samples: 6)
        var failures = 0
        for (name, err) in report.relativeErrors.sorted(by: { $0.key < $1.key }) where name != "loss.log_scale" {
            if err >= 2e-2 { failures += 1; XCTFail("gradient of \(name): relative error \(err)") }
        }
        print("model gradcheck: \(report.relativeErrors.count) tensors, worst \(report.worst)")
        XCTAssertEqual(failures, 0)
        XCTAssertGreaterThan(report.relativeErrors.count, 60)
    }

    func testEmptyModalitiesGiveFiniteOutputs() {
        let config = tinyModelConfig()
        let p = ParameterArena(seed: 4)
        let model = CLaDMoP(config, params: p)
        p.finalize()
        let arena = ActivationArena()
        let s = model.forward(tinyBatch(encoderDim: config.encoderDim), arena: arena)
        XCTAssertTrue((0..<3 * config.encoderDim).allSatisfy { s.fDM[$0].isFinite })
    }

    /// Padding is packed away, never computed on: each trial's f_DM is the same whether it is encoded in a
    /// padded batch next to longer trials or alone at its own lengths.
    func testPaddingDoesNotChangeATrialsEmbedding() {
        let config = tinyModelConfig(), e = config.encoderDim, w = config.icdTableSizes.count + 1
        let p = ParameterArena(seed: 6)
        let model = CLaDMoP(config, params: p)
        p.finalize()
        let batch = tinyBatch(encoderDim: e)
        let arena = ActivationArena(), aloneArena = ActivationArena()   // the states point into them
        let padded = model.forward(batch, arena: arena)
        for i in 0..<batch.count {
            // Trial i alone, cropped to its real (prefix) lengths.
            let lm = (0..<batch.molLength).filter { batch.molMask[i * batch.molLength + $0] == 1 }.count
            let lc = (0..<batch.codeLength).filter { batch.codeMask[i * batch.codeLength + $0] == 1 }.count
            let ls = (0..<batch.sentenceLength).filter { batch.sentenceMask[i * batch.sentenceLength + $0] == 1 }.count
            var one = ModelBatch()
            one.count = 1
            one.molLength = lm; one.molMask = [UInt8](repeating: 1, count: lm)
            one.molIds = Array(batch.molIds[(i * batch.molLength * 2)..<((i * batch.molLength + lm) * 2)])
            one.codeLength = lc; one.codeMask = [UInt8](repeating: 1, count: lc)
            one.codeIds = Array(batch.codeIds[(i * batch.codeLength * w)..<((i * batch.codeLength + lc) * w)])
            one.sentenceLength = ls; one.sentenceMask = [UInt8](repeating: 1, count: ls)
            for level in 0..<3 {
                let start = ((level * batch.count + i) * batch.sentenceLength) * e
                one.criteria += batch.criteria[start..<(start + ls * e)]
            }
            aloneArena.reset()
            let alone = model.forward(one, arena: aloneArena)
            for j in 0..<e { XCTAssertEqual(alone.fDM[j], padded.fDM[i * e + j], accuracy: 1e-5, "trial \(i), component \(j)") }
        }
    }

    func testPaperShapeFLOPsAndParameterCount() {
        // SPEC 8: 1.002 GFLOP forward per sample at (128, 16, 32), 11.37 M parameters with a depth-5 ICD tree.
        let config = ModelConfig(dim: 128, heads: 8, molLayers: 4, disLayers: 4, groupingLayers: 3, selfLayers: 2, centroids: 100,
                                 encoderDim: 384, molVocab: 100, maxMolecules: 8, icdTableSizes: [22, 284, 1917, 10262, 17924],
                                 categoryCount: 1918, learnableScale: false, initialLogScale: 0.6)
        let p = ParameterArena(seed: 0)
        let model = CLaDMoP(config, params: p)
        XCTAssertEqual(model.forwardFLOPs(molLength: 128, codeLength: 16, sentenceLength: 32) / 1e9, 1.002, accuracy: 0.02)
        XCTAssertEqual(Double(p.count) / 1e6, 11.37, accuracy: 0.2)
    }
}

/// The zero-shot score is the sigmoid of the pretraining's own logit: s cos(f_C, f_DM) for a model pretrained with
/// normalized embeddings, s f_C . f_DM for one pretrained without (`loss.normalize: false`); recomputed here in Double.
final class ZeroShotScorerTests: XCTestCase {
    func testTheScoreFollowsTheLossNormalization() {
        let config = tinyModelConfig()
        let p = ParameterArena(seed: 3)
        let model = CLaDMoP(config, params: p)
        p.finalize()
        model.initializeLogScale()
        let batch = tinyBatch(encoderDim: config.encoderDim), e = config.encoderDim
        let arena = ActivationArena()
        let state = model.forward(batch, arena: arena)
        let fC = arena.allocate(batch.count * e)
        batch.criteriaEmbedding(dim: e, into: fC)
        let s = exp(Double(p.value(model.logScale)[0]))
        var cosine: [Double] = [], dot: [Double] = []
        for i in 0..<batch.count {
            var d = 0.0, na = 0.0, nb = 0.0
            for k in 0..<e { let a = Double(fC[i * e + k]), b = Double(state.fDM[i * e + k]); d += a * b; na += a * a; nb += b * b }
            cosine.append(1 / (1 + exp(-s * d / (na * nb).squareRoot()))); dot.append(1 / (1 + exp(-s * d)))
        }
        let normalized = ZeroShotScorer(model: model, normalize: true).probabilities(batch, arena: ActivationArena())
        let plain = ZeroShotScorer(model: model, normalize: false).probabilities(batch, arena: ActivationArena())
        for i in 0..<batch.count {
            XCTAssertEqual(Double(normalized[i]), cosine[i], accuracy: 1e-5, "trial \(i), normalized")
            XCTAssertEqual(Double(plain[i]), dot[i], accuracy: 1e-5, "trial \(i), not normalized")
        }
        XCTAssertGreaterThan(zip(cosine, dot).map { abs($0 - $1) }.max()!, 1e-3, "the two scores must differ on this batch")
    }
}
