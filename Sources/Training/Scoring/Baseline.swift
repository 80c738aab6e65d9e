import Foundation
import NN
import TrialData

/// Logistic-regression baseline on simple features (issue 5's floor): the mean fine-level criteria vector,
/// a bag of ICD-10 categories and a bag of SMILES tokens (vocabularies from the training rows, counts
/// normalised per trial), standardised with the training statistics; class-weighted log loss with L2,
/// full-batch Adam (`Optimizer`).
public struct LogisticBaseline {
    var categories: [String: Int] = [:]
    var tokens: [String: Int] = [:]
    var mean: [Float] = [], scale: [Float] = []
    public var weights: [Float] = []
    let hierarchy: ICD10Hierarchy
    let store: FeatureStore

    /// `labels`: the 0/1 label of each of `train` (`requireLabels`).
    public init(train: [StoredTrial], labels: [Int], store: FeatureStore, hierarchy: ICD10Hierarchy, l2: Float = 1e-3, iterations: Int = 400) {
        self.store = store; self.hierarchy = hierarchy
        for t in train {
            for c in t.icd.joined() { if let cat = hierarchy.category(c), categories[cat] == nil { categories[cat] = categories.count } }
            for m in t.smiles { for tok in m where tokens[tok] == nil { tokens[tok] = tokens.count } }
        }
        var x = train.map(features)
        let f = x.first?.count ?? 0
        mean = (0..<f).map { j in x.reduce(0) { $0 + $1[j] } / Float(max(x.count, 1)) }
        scale = (0..<f).map { j in
            let v = x.reduce(0) { $0 + ($1[j] - mean[j]) * ($1[j] - mean[j]) } / Float(max(x.count, 1))
            return v > 1e-12 ? 1 / v.squareRoot() : 0
        }
        x = x.map(standardize)
        let y = labels.map(Float.init)
        let (w1, w0) = classWeights(positives: labels.filter { $0 == 1 }.count, count: labels.count)
        // The weights with L2 `l2` added to their gradient, the bias without; Adam at 0.05, full batch.
        let params = ParameterArena(seed: 0)
        params.groups = [ParamGroup(name: "weights", learningRate: 0.05, weightDecay: l2), ParamGroup(name: "bias", learningRate: 0.05)]
        let weightsRef = params.register("weights", shape: [f], initializer: .zeros, group: 0)
        let biasRef = params.register("bias", shape: [1], initializer: .zeros, group: 1)
        params.finalize()
        let optimizer = Optimizer(kind: .adam, params: params)
        let w = params.value(weightsRef), g = params.grad(weightsRef)
        var z = [Float](repeating: 0, count: x.count), dz = z
        for _ in 0..<iterations {
            params.zeroGrads()
            for (i, xi) in x.enumerated() {
                z[i] = params.value(biasRef)[0]
                for j in 0..<f { z[i] += w[j] * xi[j] }
            }
            _ = weightedBCE(logits: z, labels: y, count: x.count, positiveWeight: w1, negativeWeight: w0, dz: &dz)
            for (xi, d) in zip(x, dz) {
                for j in 0..<f { g[j] += d * xi[j] }
                params.grad(biasRef)[0] += d
            }
            optimizer.update(params)
        }
        weights = Array(UnsafeBufferPointer(start: w, count: f)) + [params.value(biasRef)[0]]   // last: bias
    }

    func features(_ t: StoredTrial) -> [Float] {
        let e = store.dim
        var out = [Float](repeating: 0, count: e + categories.count + tokens.count)
        for s in t.sentences { let v = store.vector(sentence: s, level: 2); for k in 0..<e { out[k] += v[k] / Float(t.sentences.count) } }
        let codes = Array(t.icd.joined())
        for c in codes { if let cat = hierarchy.category(c), let i = categories[cat] { out[e + i] += 1 / Float(codes.count) } }
        let toks = t.smiles.joined()
        for tok in toks { if let i = tokens[tok] { out[e + categories.count + i] += 1 / Float(max(toks.count, 1)) } }
        return out
    }

    func standardize(_ x: [Float]) -> [Float] { x.indices.map { (x[$0] - mean[$0]) * scale[$0] } }

    /// Success probabilities.
    public func predict(_ trials: [StoredTrial]) -> [Double] {
        let f = weights.count - 1
        return trials.map { t in
            let x = standardize(features(t))
            var z = weights[f]
            for j in 0..<f { z += weights[j] * x[j] }
            return Double(sigmoid(z))
        }
    }
}
