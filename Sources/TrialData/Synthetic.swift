import Support
import Foundation
import NN

/// Bytes the synthetic store's vectors take in memory, at most, per trial and unit of width (16 sentences x 3 levels
/// x 4 bytes): what `synth` checks against the machine's memory before building one.
public let syntheticBytesPerTrialAndDim = 16 * 3 * 4

/// A synthetic SCT corpus with planted pair structure, for tests and batch-size studies at any scale.
///
/// Each trial draws 1-3 drugs from a pool of `drugPool` molecules (random SMILES-like token strings) and
/// 1-3 ICD-10 codes from `diseasePool` real leaf codes. Drugs and diseases have latent vectors u, v in R^k;
/// a trial's latent is z = mean(u) + mean(v), and each of its criterion sentences at level l is
/// W_l z + noise (W_l a fixed random E x k map). The pairing of criteria with drugs and diseases is thus
/// learnable, and harder as `noise` grows. All trials are successful (label 1).
public func writeSyntheticStore(path: String, trials count: Int, dim: Int, hierarchy: ICD10Hierarchy, seed: UInt64,
                                noise: Float = 0.5, latent k: Int = 16, drugPool: Int = 200, diseasePool: Int = 300,
                                sentences: ClosedRange<Int> = 4...16) throws {
    var rng = RNG(seed: seed)
    let atoms = ["C", "c", "N", "n", "O", "o", "S", "F", "Cl", "Br", "(", ")", "=", "1", "2", "[C@@H]", "[nH]", "#"]
    let drugs: [[String]] = (0..<drugPool).map { _ in (0..<(8 + rng.int(below: 30))).map { _ in atoms[rng.int(below: atoms.count)] } }
    let leaves = hierarchy.depth.filter { $0.value >= 4 }.map(\.key).sorted()
    guard !leaves.isEmpty else {
        throw InputError(file: hierarchy.path, "has no node at depth 4 or below; the synthetic corpus draws its diseases from those codes")
    }
    let diseases: [String] = (0..<diseasePool).map { _ in leaves[rng.int(below: leaves.count)] }
    let u = (0..<drugPool).map { _ in (0..<k).map { _ in rng.normal() } }
    let v = (0..<diseasePool).map { _ in (0..<k).map { _ in rng.normal() } }
    let maps = (0..<3).map { _ in (0..<(dim * k)).map { _ in rng.normal() / Float(k).squareRoot() } }
    var trials: [StoredTrial] = []
    var vectors: [Float] = []
    // At the most sentences a trial can draw: the array never doubles (what synth checks against memory is exact).
    vectors.reserveCapacity(count * 3 * dim * sentences.upperBound)
    var sentenceCount = 0
    for i in 0..<count {
        let ds = (0..<(1 + rng.int(below: 3))).map { _ in rng.int(below: drugPool) }
        let cs = (0..<(1 + rng.int(below: 3))).map { _ in rng.int(below: diseasePool) }
        var z = [Float](repeating: 0, count: k)
        for d in ds { for j in 0..<k { z[j] += u[d][j] / Float(ds.count) } }
        for c in cs { for j in 0..<k { z[j] += v[c][j] / Float(cs.count) } }
        let s = sentences.lowerBound + rng.int(below: sentences.count)
        var rows: [Int] = []
        for _ in 0..<s {
            for level in 0..<3 {
                for r in 0..<dim {
                    var x: Float = 0
                    for j in 0..<k { x += maps[level][r * k + j] * z[j] }
                    vectors.append(x + noise * rng.normal())
                }
            }
            rows.append(sentenceCount); sentenceCount += 1
        }
        trials.append(StoredTrial(nctid: String(format: "NCT%08d", 10_000_000 + i), label: 1, phase: "synthetic",
                                  source: TrialSource(file: "synthetic", line: i + 2), icd: [cs.map { diseases[$0] }], smiles: ds.map { drugs[$0] },
                                  sentences: rows, inclusion: rows.map { _ in true }))
    }
    let identity = StoreIdentity(encoder: "synthetic", maxTokens: 0, featurizerVersion: FeatureStore.featurizerVersion,
                                 sources: ["synthetic": "seed \(seed) trials \(count) noise \(noise)"])
    try vectors.withUnsafeBufferPointer {
        try FeatureStore.write(path: path, identity: identity, dim: dim, trials: trials, sourcePaths: ["synthetic"],
                               skipped: [], vectors: $0.baseAddress!, sentenceCount: sentenceCount)
    }
}
